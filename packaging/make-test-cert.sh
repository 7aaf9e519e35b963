#!/usr/bin/env bash
# Creates a throwaway CA and a server certificate for localhost/127.0.0.1 in config/tls/, so
# config/tls.yaml runs as is. Not for production: use your own certificates there.
set -euo pipefail
dir=$(cd "$(dirname "$0")/../config/tls" && pwd)
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=stickyd test CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl
echo "wrote $dir/server.pem, server.key (CA: ca.pem; try: curl --cacert $dir/ca.pem https://localhost:8443/socket.io/?EIO=4\\&transport=polling)"
