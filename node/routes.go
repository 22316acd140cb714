package node

import "github.com/hookswitch/hookswitch/httpapi"

// Routes lists the HTTP routes this node serves (the API's and those the
// node mounted: ingest, websocket, metrics, internal), for the check of
// docs/openapi.yaml against the server.
func (n *Node) Routes() []httpapi.Route { return n.api.Routes() }
