'use strict';
// Baseline for cold starts: a plain `node` process per request that loads the handler, calls it once with the
// event from argv and prints the result. No sandbox, no Runtime API: the floor a platform is compared with.
const path = require('node:path');
const [dir, handler, event] = process.argv.slice(2);
const [file, fn] = handler.split('.');
const mod = require(path.join(dir, file));
Promise.resolve(mod[fn](JSON.parse(event), { awsRequestId: 'bench', getRemainingTimeInMillis: () => 60000 }))
  .then((r) => process.stdout.write(`${JSON.stringify(r)}\n`))
  .then(() => process.exit(0));
