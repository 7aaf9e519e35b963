// Socket.IO connection state recovery through stickyd (issue 17), client side: a
// socket.io-client v4 client that loses its transport once and reconnects, with or without the
// reconnect hint (the README's snippet). The same file runs in Node (require) and in the
// browser tests' tabs (injected into the page, `io` from the page's library): no dependency.
// The nodes run with --recovery (tests/e2e/node.js): a broadcast `tock` {node, n} every
// 100 ms, `later` and `whoami`.
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.recoveryClient = factory();
})(typeof self !== 'undefined' ? self : this, () => {
  'use strict';

  // The client kinds: socket.io-client transports options.
  const KINDS = {
    'polling-only': { transports: ['polling'] },
    'websocket-only': { transports: ['websocket'] },
    upgrade: {}, // polling first, then websocket
  };

  // The README's snippet, as an application writes it: the previous Engine.IO id goes in the
  // query of the next Engine.IO session (engine.io-client reads opts.query for each new
  // Engine, which the Manager creates right after `reconnect_attempt`).
  function addReconnectHint(socket) {
    let prevSid;
    socket.on('connect', () => {
      prevSid = socket.io.engine.id;
    });
    socket.io.on('reconnect_attempt', () => {
      socket.io.opts.query = { ...socket.io.opts.query, prev_sid: prevSid };
    });
  }

  function bounded(promise, ms, what) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  // Resolves once `pred()` holds, re-checked on every `event` of `emitter`; bounded.
  function whenever(emitter, event, pred, ms, what) {
    let check;
    return bounded(
      new Promise((resolve) => {
        check = () => {
          if (pred()) resolve();
        };
        emitter.on(event, check);
        check();
      }),
      ms,
      what,
    ).finally(() => emitter.off(event, check));
  }

  // The `n` of the tocks from `node` with a gap before them, from the first to the last.
  function gapsIn(tocks, node) {
    const ns = [...new Set(tocks.filter((m) => m.node === node).map((m) => m.n))].sort((a, b) => a - b);
    const gaps = [];
    for (let k = 1; k < ns.length; k++) if (ns[k] !== ns[k - 1] + 1) gaps.push([ns[k - 1], ns[k]]);
    return gaps;
  }

  // One client's life: connect (and upgrade, for `upgrade`), get a few tocks (so that it has
  // an offset), ask for a `later` emit 100 ms ahead, lose its transport, reconnect after
  // `reconnectionDelay` +-50%, and (when it recovered) get the `later` and the tocks it missed.
  // Losing the transport: engine.close(), what engine.io-client does when its connection
  // breaks (the node sees "transport close", a reason it recovers from); or `drop(r, socket)`
  // (e.g. kill the node). `beforeReconnect(r, socket)` runs after the loss and before the
  // client may reconnect (give it a long `reconnectionDelay`). `jitter`: socket.io-client's
  // randomizationFactor. `hint`: the README's snippet.
  // `ms`: the bound of each wait.
  async function dropOnce(io, url, kind, index, { hint = true, drop, beforeReconnect, reconnectionDelay = 300, jitter = 0.5, query, ms = 15000 } = {}) {
    const r = { index, kind, ok: false, error: null, connectErrors: [], disconnects: [], tocks: [], later: [] };
    const socket = io(url, {
      forceNew: true,
      // socket.io-client's jitter (randomizationFactor 0.5): clients that lost their transport
      // together do not reconnect in the order they first connected (round robin would then
      // send each back to its node by chance).
      reconnectionDelay,
      reconnectionDelayMax: 2 * reconnectionDelay,
      randomizationFactor: jitter,
      timeout: ms,
      ...(query ? { query } : {}),
      ...KINDS[kind],
    });
    const ask = (event, ...args) => socket.timeout(ms).emitWithAck(event, ...args);
    socket.on('connect_error', (err) => r.connectErrors.push(String(err && err.message)));
    socket.on('disconnect', (reason) => r.disconnects.push(String(reason)));
    socket.on('tock', (m) => r.tocks.push(m));
    socket.on('later', (m) => r.later.push(m));
    if (hint) addReconnectHint(socket);
    let sessions = 0;
    socket.on('connect', () => sessions++);
    try {
      await whenever(socket, 'connect', () => sessions >= 1, ms, `client ${index} connect`);
      const first = await ask('whoami');
      Object.assign(r, { node1: first.node, id1: socket.id, sid1: socket.io.engine.id });
      if (kind === 'upgrade') {
        const engine = socket.io.engine;
        await whenever(engine, 'upgrade', () => engine.transport.name === 'websocket', ms, `client ${index} upgrade`);
      }
      await whenever(socket, 'tock', () => r.tocks.length >= 3, ms, `client ${index}: 3 tocks`);
      const token = `later-${kind}-${index}`;
      await ask('later', { ms: 100, data: token });
      const tocksBefore = r.tocks.length;
      if (drop) await drop(r, socket);
      else socket.io.engine.close();
      if (beforeReconnect) await beforeReconnect(r, socket);
      await whenever(socket, 'connect', () => sessions >= 2, 2 * ms + 2 * reconnectionDelay, `client ${index} reconnect`);
      const second = await ask('whoami');
      Object.assign(r, { node2: second.node, id2: socket.id, sid2: socket.io.engine.id, recovered: socket.recovered, nodeSaysRecovered: second.recovered });
      if (r.recovered) {
        // What it missed: the `later` sent while it was away, and every tock (and a live one).
        await whenever(socket, 'later', () => r.later.some((m) => m.data === token), ms, `client ${index}: later`);
        await whenever(socket, 'tock', () => r.tocks.length > tocksBefore + 1, ms, `client ${index}: a tock after recovery`);
        r.gaps = gapsIn(r.tocks, r.node1);
      }
      r.ok = true;
    } catch (err) {
      r.error = err && err.message ? err.message : String(err);
    } finally {
      socket.disconnect();
    }
    r.tocks = r.tocks.length;
    return r;
  }

  // `n` clients of `kind` at once (started over ~300 ms).
  function dropMany(io, url, kind, n, opts = {}) {
    const jobs = [];
    for (let i = 0; i < n; i++) {
      jobs.push(new Promise((resolve) => setTimeout(resolve, Math.random() * 300)).then(() => dropOnce(io, url, kind, i, opts)));
    }
    return Promise.all(jobs);
  }

  // A client recovered: same Socket.IO id on the same node, which says so too.
  function recovered(r) {
    return r.ok && r.recovered === true && r.nodeSaysRecovered === true && r.id2 === r.id1 && r.node2 === r.node1;
  }

  return { KINDS, addReconnectHint, whenever, gapsIn, dropOnce, dropMany, recovered };
});
