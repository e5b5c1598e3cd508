/**
 * The log thread: owns DATA/logs.db and runs every write, trim, vacuum and query on it, so that none of that
 * work runs on the server's event loop. Requests are handled in order, so a query sees every line appended before.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LogStore } from './store.js';
import type { LogReply, LogRequest, LogThreadData } from './messages.js';

const port = parentPort;
if (port === null) throw new Error('logs/thread.js runs as a worker thread');
const data = workerData as LogThreadData;
const store = new LogStore(data.file, data.retention);
let imported = 0;
if (data.legacyDb !== undefined) imported = store.importLegacy(data.legacyDb);
port.postMessage({ id: 0, ready: true, imported } satisfies LogReply);

port.on('message', (m: LogRequest) => {
  let reply: LogReply;
  try {
    switch (m.type) {
      case 'append':
        store.append(m.rows);
        reply = { id: m.id, ok: true };
        break;
      case 'query':
        reply = { id: m.id, ok: true, lines: store.query(m.functionName, m.query) };
        break;
      case 'delete':
        store.deleteFunction(m.functionName);
        reply = { id: m.id, ok: true };
        break;
      case 'stats':
        reply = { id: m.id, ok: true, stats: { storedBytes: store.storedBytes(), imported } };
        break;
      case 'close':
        store.close();
        reply = { id: m.id, ok: true };
        break;
    }
  } catch (e) {
    reply = { id: m.id, ok: false, error: (e as Error).message };
  }
  port.postMessage(reply);
});
