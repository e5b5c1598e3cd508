import { InvalidArgumentError, type Command } from 'commander';
import { intOption } from './flags.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run Thaw on this machine: API on 127.0.0.1:PORT, state in DIR')
    .requiredOption('--port <port>', 'TCP port of the API', intOption(0, 65535))
    .requiredOption('--data <dir>', 'data directory (SQLite state, code, credentials)')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--driver <name>', 'sandbox driver: namespaces or process (default: namespaces when available)')
    .option('--keep-alive <seconds>', 'how long idle environments are kept', intOption(1, 86400))
    .option('--max-environments <n>', 'cap on execution environments on this machine', intOption(1, 100000))
    .option('--no-stem-cells', 'do not keep pre-started runtimes ready (every cold start boots a runtime)')
    .option('--no-code-cache', 'do not produce or use post-init code caches')
    .option('--store-origin <dir|s3://bucket/prefix>', 'where chunks are kept (default: DIR/store)')
    .option('--store-endpoint <url>', 'S3-compatible endpoint for an s3:// store origin')
    .option('--log-level <level>', 'server log level (fatal, error, warn, info, debug)', 'info')
    .action(async (o: { port: number; data: string; host: string; driver?: string; keepAlive?: number; maxEnvironments?: number; stemCells: boolean; codeCache: boolean; logLevel: string; storeOrigin?: string; storeEndpoint?: string }) => {
      if (o.driver !== undefined && o.driver !== 'namespaces' && o.driver !== 'process') {
        throw new InvalidArgumentError(`unknown driver ${o.driver}: use namespaces or process`);
      }
      // Loaded here so that client commands do not pay for the server's modules (SQLite, sandboxes, pino).
      const [{ startThaw }, { createLogger }] = await Promise.all([import('../app.js'), import('../util/log.js')]);
      const logger = createLogger(o.logLevel);
      const thaw = await startThaw({
        port: o.port,
        host: o.host,
        dataDir: o.data,
        logger,
        ...(o.driver === undefined ? {} : { driver: o.driver }),
        ...(o.keepAlive === undefined ? {} : { keepAliveMs: o.keepAlive * 1000 }),
        ...(o.maxEnvironments === undefined ? {} : { maxEnvironments: o.maxEnvironments }),
        stemCells: o.stemCells,
        codeCache: o.codeCache,
        ...(o.storeOrigin === undefined ? {} : { storeOrigin: o.storeOrigin }),
        ...(o.storeEndpoint === undefined ? {} : { storeEndpoint: o.storeEndpoint }),
      });
      if (thaw.credentialsFile !== undefined) {
        process.stdout.write(`credentials: ${thaw.credentialsFile} (access key ${thaw.credentials.accessKeyId})\n`);
      }
      process.stdout.write(`sandbox driver: ${thaw.driverName}\n`);
      process.stdout.write(`thaw listening on ${thaw.url}\n`);
      const stop = (): void => {
        void thaw.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
