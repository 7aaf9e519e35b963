'use strict';
// A real HAProxy (Debian package) for the tests that compare with it or migrate from it.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const h = require('./harness');

function haproxyBin() {
  for (const dir of (process.env.PATH || '').split(':').concat(['/usr/sbin', '/usr/local/sbin'])) {
    const p = path.join(dir || '.', 'haproxy');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

// Runs `haproxy -f file -db` (foreground) and resolves once every port in `ports` accepts
// (HAProxy prints no readiness line in -db mode: probed, bounded). -> {child, stderr, stop()}.
async function startHaproxyConfig(file, ports) {
  const bin = haproxyBin();
  if (!bin) throw new Error('haproxy not found');
  const child = h.trackChild(spawn(bin, ['-f', file, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const stderr = h.lineCollector(child.stderr);
  h.lineCollector(child.stdout);
  const stop = () => h.stopChild(child);
  try {
    for (const port of ports) {
      await h.until(
        () =>
          child.exitInfo
            ? Promise.reject(new Error(`haproxy exited: ${JSON.stringify(child.exitInfo)}\n${stderr.join('\n')}`))
            : new Promise((resolve) => {
                const s = net.connect({ host: h.HOST, port }, () => {
                  s.destroy();
                  resolve(true);
                });
                s.on('error', () => resolve(false));
              }),
        h.T.proxyReady,
        `haproxy listening on ${port}`,
        50,
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { child, stderr, stop };
}

module.exports = { haproxyBin, startHaproxyConfig };
