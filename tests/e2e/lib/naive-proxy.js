'use strict';
// A deliberately NON-sticky HTTP reverse proxy (plain round robin per request), used only by
// the negative control to show that the scenario checks fail without stickiness.
// Loopback only; no websocket support (the control runs polling-only clients).

const http = require('node:http');

function startNaiveProxy(backendPorts) {
  let next = 0;
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const port = backendPorts[next++ % backendPorts.length];
    const upstream = http.request(
      { host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers, agent },
      (ures) => {
        res.writeHead(ures.statusCode, ures.rawHeaders);
        ures.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        close: () =>
          new Promise((r) => {
            server.close(() => r());
            server.closeAllConnections();
            agent.destroy();
          }),
      });
    });
  });
}

module.exports = { startNaiveProxy };
