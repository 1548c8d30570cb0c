// Runs the spec's WebSocket example (spec_websocket_example.js, verbatim but for the URL) under Node's
// WebSocket, the same WHATWG WebSocket class browsers have. Node 20 needs --experimental-websocket.
//
// Two things around the example, not in it:
// 1. The example calls ws.send() right after `new WebSocket(...)`, while the socket is still
//    CONNECTING; a browser (and Node) throws InvalidStateError there. This shim queues such sends
//    until "open", which is what a dashboard must do (send in onopen).
// 2. console.log prints each received message as one JSON line, so the test can read them.
// Usage: node --experimental-websocket harness.js <example file> <ws url> <seconds>
'use strict';
const fs = require('fs');

const [examplePath, url, seconds] = process.argv.slice(2);
const NativeWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class QueueingWebSocket extends NativeWebSocket {
  constructor(_ignoredUrl, protocols) {
    super(url, protocols);  // the example's localhost:8000 URL, pointed at the test's gateway with ?token=
    this.addEventListener('close', (event) => {
      process.stdout.write(JSON.stringify({ harness: 'close', code: event.code }) + '\n');
    });
  }
  send(data) {
    if (this.readyState === NativeWebSocket.CONNECTING) {
      this.addEventListener('open', () => super.send(data), { once: true });
    } else {
      super.send(data);
    }
  }
};
console.log = (_label, message) => process.stdout.write(JSON.stringify(message) + '\n');

const example = fs.readFileSync(examplePath, 'utf8');
new Function(example)();
setTimeout(() => process.exit(0), Number(seconds) * 1000);
