package main
import (
 _ "github.com/hashicorp/raft"
 _ "github.com/hashicorp/raft-boltdb/v2"
 _ "github.com/hashicorp/go-metrics"
 _ "go.etcd.io/bbolt"
 _ "github.com/labstack/echo/v4"
 _ "github.com/coder/websocket"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/spf13/cobra"
 _ "github.com/BurntSushi/toml"
 _ "github.com/coreos/go-systemd/v22/daemon"
 _ "github.com/standard-webhooks/standard-webhooks/libraries/go"
)
func main(){}
