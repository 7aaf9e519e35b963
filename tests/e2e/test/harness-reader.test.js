'use strict';
// The incremental HTTP/1.1 response reader used by the raw-connection test (f): responses
// split at every byte boundary, chunked (with extensions and trailers), Content-Length, 204.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { HttpResponseReader } = require('../lib/harness');

const WIRE = [
  'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
  '5;ext=1\r\n{"a":\r\n3\r\n"b"\r\n1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n',
  'HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n',
  'HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok',
  'HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n29\r\n{"code":1,"message":"Session ID unknown"}\r\n0\r\n\r\n',
].join('');

function check(responses) {
  assert.equal(responses.length, 4);
  assert.equal(responses[0].status, 200);
  assert.equal(responses[0].body, '{"a":"b"}');
  assert.equal(responses[1].status, 204);
  assert.equal(responses[1].body, '');
  assert.deepEqual(responses[2].rawHeaders, ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Content-Length', '2']);
  assert.equal(responses[2].body, 'ok');
  assert.equal(responses[3].status, 400);
  assert.equal(responses[3].body, '{"code":1,"message":"Session ID unknown"}');
}

test('harness: HTTP/1.1 response reader (whole, byte by byte, bad input)', () => {
  const whole = new HttpResponseReader();
  whole.feed(Buffer.from(WIRE));
  check(whole.responses);

  const bytes = new HttpResponseReader();
  const buf = Buffer.from(WIRE);
  for (let i = 0; i < buf.length; i++) bytes.feed(buf.subarray(i, i + 1));
  check(bytes.responses);

  // An incomplete response is not reported, and a close in its middle is an error.
  const partial = new HttpResponseReader();
  partial.feed(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc'));
  assert.equal(partial.responses.length, 0);
  partial.end();
  assert.ok(partial.error);

  assert.throws(() => new HttpResponseReader().feed(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n')), /chunk size/);
  assert.throws(() => new HttpResponseReader().feed(Buffer.from('garbage\r\n\r\n')), /status line/);
});
