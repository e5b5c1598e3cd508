/**
 * `thaw deploy PATH`: package a folder (or take a .zip), then create the function or update its code
 * (and its configuration, when configuration flags were given), wait until it is ready, and say what it is.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  CreateFunctionCommand, GetFunctionConfigurationCommand, UpdateFunctionCodeCommand, UpdateFunctionConfigurationCommand,
  type FunctionConfiguration, type LambdaClient, type Runtime,
} from '@aws-sdk/client-lambda';
import type { Command } from 'commander';
import { zipDirectory } from '../control/package.js';
import { addClientOptions, withSession, type ClientFlags } from './client.js';
import { CliError } from './errors.js';
import { functionNameFrom, intOption, keyValue } from './flags.js';
import { formatBytes, printJson } from './output.js';
import { progressBar, trackUploads } from './progress.js';
import { sleep } from './sleep.js';

export const DEFAULT_ROLE = 'arn:aws:iam::000000000000:role/thaw-function';
export const DEFAULT_RUNTIME = 'nodejs24.x';
export const DEFAULT_HANDLER = 'index.handler';

interface DeployFlags extends ClientFlags {
  name?: string;
  runtime?: string;
  handler?: string;
  memory?: number;
  timeout?: number;
  env?: Record<string, string>;
  description?: string;
  publish?: boolean;
}

export function registerDeploy(program: Command): void {
  addClientOptions(
    program
      .command('deploy')
      .description('create or update a function from a folder (zipped for you) or a .zip file')
      .argument('<path>', 'folder or .zip file with the code')
      .option('--name <name>', 'function name (default: the folder or zip name)')
      .option('--runtime <runtime>', `runtime (default on create: ${DEFAULT_RUNTIME})`)
      .option('--handler <handler>', `handler (default on create: ${DEFAULT_HANDLER})`)
      .option('--memory <mb>', 'memory in MB', intOption(128, 10240))
      .option('--timeout <seconds>', 'timeout in seconds', intOption(1, 900))
      .option('--env <KEY=VALUE>', 'environment variable (repeatable; replaces the whole environment)', keyValue)
      .option('--description <text>', 'description')
      .option('--publish', 'publish a version after deploying'),
  ).action(async (target: string, flags: DeployFlags) => {
    await withSession(flags, async (s) => {
      const pkg = await loadPackage(target);
      const name = flags.name ?? pkg.defaultName;
      if (name === '') throw new CliError(`cannot make a function name from ${target}; pass --name`);
      trackUploads(s.lambda, ['CreateFunctionCommand', 'UpdateFunctionCodeCommand'], (total) => progressBar('uploading', total, 'bytes'));
      const { config, created } = await deploy(s.lambda, name, pkg.zip, flags);
      if (s.json) printJson(config);
      else {
        process.stdout.write(
          `${created ? 'created' : 'updated'} ${config.FunctionName ?? name}\n` +
            `  version  ${config.Version ?? '-'}\n` +
            `  sha256   ${config.CodeSha256 ?? '-'}\n` +
            `  size     ${config.CodeSize === undefined ? '-' : `${formatBytes(config.CodeSize)} (${config.CodeSize} bytes)`}\n` +
            `  state    ${config.State ?? '-'}${config.StateReason === undefined ? '' : ` (${config.StateReason})`}\n`,
        );
      }
      if (config.State === 'Failed' || config.LastUpdateStatus === 'Failed') {
        throw new CliError(`${name} failed: ${config.StateReason ?? config.LastUpdateStatusReason ?? 'no reason given'}`);
      }
    });
  });
}

async function loadPackage(target: string): Promise<{ zip: Buffer; defaultName: string }> {
  const st = await stat(target).catch(() => {
    throw new CliError(`${target}: no such file or folder`);
  });
  const base = path.basename(path.resolve(target));
  if (st.isDirectory()) {
    let bar: ReturnType<typeof progressBar> | undefined;
    try {
      const zip = await zipDirectory(target, (p) => {
        if (p.totalFiles === 0) return;
        bar ??= progressBar('packaging', p.totalFiles, 'files');
        bar.update(p.files);
      });
      return { zip, defaultName: functionNameFrom(base) };
    } catch (e) {
      throw new CliError(e instanceof Error ? e.message : String(e));
    } finally {
      bar?.stop();
    }
  }
  if (st.isFile() && /\.zip$/i.test(target)) return { zip: await readFile(target), defaultName: functionNameFrom(base) };
  throw new CliError(`${target} is neither a folder nor a .zip file`);
}

async function deploy(lambda: LambdaClient, name: string, zip: Buffer, f: DeployFlags): Promise<{ config: FunctionConfiguration; created: boolean }> {
  const exists = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: name })).then(
    () => true,
    (e: unknown) => {
      if (e instanceof Error && e.name === 'ResourceNotFoundException') return false;
      throw e;
    },
  );
  const config = {
    ...(f.memory === undefined ? {} : { MemorySize: f.memory }),
    ...(f.timeout === undefined ? {} : { Timeout: f.timeout }),
    ...(f.env === undefined ? {} : { Environment: { Variables: f.env } }),
    ...(f.description === undefined ? {} : { Description: f.description }),
  };
  if (!exists) {
    const c = await lambda.send(new CreateFunctionCommand({
      FunctionName: name,
      Runtime: (f.runtime ?? DEFAULT_RUNTIME) as Runtime,
      Handler: f.handler ?? DEFAULT_HANDLER,
      Role: DEFAULT_ROLE,
      Code: { ZipFile: zip },
      Publish: f.publish === true,
      ...config,
    }));
    return { config: await ready(lambda, c), created: true };
  }
  const changed = { ...config, ...(f.runtime === undefined ? {} : { Runtime: f.runtime as Runtime }), ...(f.handler === undefined ? {} : { Handler: f.handler }) };
  if (Object.keys(changed).length > 0) await ready(lambda, await lambda.send(new UpdateFunctionConfigurationCommand({ FunctionName: name, ...changed })));
  const c = await lambda.send(new UpdateFunctionCodeCommand({ FunctionName: name, ZipFile: zip, Publish: f.publish === true }));
  return { config: await ready(lambda, c), created: false };
}

/** Wait while a version is Pending or an update InProgress, as `aws lambda wait function-updated` does. */
async function ready(lambda: LambdaClient, c: FunctionConfiguration): Promise<FunctionConfiguration> {
  let cur = c;
  const deadline = Date.now() + 10 * 60_000;
  while ((cur.State === 'Pending' || cur.LastUpdateStatus === 'InProgress') && Date.now() < deadline) {
    await sleep(250);
    cur = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: cur.FunctionName, Qualifier: cur.Version }));
  }
  return cur;
}
