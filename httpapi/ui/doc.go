// Package ui serves the status dashboard (DESIGN.md "Status dashboard") at
// /ui/: static files embedded in the binary (plain ES modules, no build
// step, no request to any other origin) with a strict
// Content-Security-Policy. The page talks to the node's own API with the
// operator's token, so the API's auth and scope rules apply to everything
// it shows or does; the server side has nothing to authorize here.
package ui
