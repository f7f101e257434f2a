#!/usr/bin/env bash
# A tiny stdio MCP server for the broker's 1,000-idle-session memory figure:
# bash, a few MB of RSS, so a thousand of them fit on the bench machine while
# the broker's own memory is measured. It answers initialize (echoing the
# client's protocol version), ping, tools/list and tools/call (any tool: the
# text "ok"), ignores notifications, and exits when stdin closes. Messages are
# JSON-RPC lines whose "id" is a number (the broker renames every id it sends).
while IFS= read -r line; do
  [[ $line =~ \"method\":\"([^\"]+)\" ]] || continue
  method=${BASH_REMATCH[1]}
  [[ $line =~ ^\{\"jsonrpc\":\"2\.0\",\"id\":([0-9]+) || $line =~ \"id\":([0-9]+) ]] || continue
  id=${BASH_REMATCH[1]}
  case $method in
    initialize)
      version=2025-11-25
      [[ $line =~ \"protocolVersion\":\"([^\"]+)\" ]] && version=${BASH_REMATCH[1]}
      printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"%s","capabilities":{"tools":{}},"serverInfo":{"name":"tiny-child","version":"1.0.0"}}}\n' "$id" "$version" ;;
    ping)
      printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
    tools/list)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"echo","description":"Returns ok","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}}}]}}\n' "$id" ;;
    tools/call)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"ok"}]}}\n' "$id" ;;
    *)
      printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"Method not found"}}\n' "$id" ;;
  esac
done
