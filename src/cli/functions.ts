/** `thaw ls`, `thaw publish`, `thaw drain`, `thaw rm`: the small function-level commands. */
import { DeleteFunctionCommand, ListFunctionsCommand, PublishVersionCommand, type FunctionConfiguration } from '@aws-sdk/client-lambda';
import type { Command } from 'commander';
import { addClientOptions, allPages, withSession, type ClientFlags } from './client.js';
import { printJson, shortTime, table } from './output.js';

export function registerFunctions(program: Command): void {
  addClientOptions(program.command('ls').description('list functions')).action(async (flags: ClientFlags) => {
    await withSession(flags, async (s) => {
      const all = await allPages<FunctionConfiguration>(async (marker) => {
        const page = await s.lambda.send(new ListFunctionsCommand({ ...(marker === undefined ? {} : { Marker: marker }), MaxItems: 50 }));
        return { items: page.Functions, next: page.NextMarker };
      });
      if (s.json) return printJson({ Functions: all });
      if (all.length === 0) return void process.stdout.write('no functions\n');
      process.stdout.write(table(
        ['NAME', 'RUNTIME', 'MEMORY', 'TIMEOUT', 'LAST MODIFIED', 'STATE'],
        all.map((f) => [
          f.FunctionName ?? '-',
          f.Runtime ?? '-',
          f.MemorySize === undefined ? '-' : `${f.MemorySize} MB`,
          f.Timeout === undefined ? '-' : `${f.Timeout} s`,
          shortTime(f.LastModified),
          f.State ?? '-',
        ]),
      ));
    });
  });

  addClientOptions(
    program
      .command('publish')
      .description("publish a version from the function's current code and configuration; prints the version")
      .argument('<name>', 'function name')
      .option('--description <text>', 'version description'),
  ).action(async (name: string, flags: ClientFlags & { description?: string }) => {
    await withSession(flags, async (s) => {
      const v = await s.lambda.send(new PublishVersionCommand({ FunctionName: name, ...(flags.description === undefined ? {} : { Description: flags.description }) }));
      if (s.json) printJson(v);
      else process.stdout.write(`${v.Version ?? '-'}\n`);
    });
  });

  addClientOptions(
    program
      .command('drain')
      .description('stop the idle environments of a function (or of one version), so the next invoke starts cold')
      .argument('<function>', 'NAME or NAME:QUALIFIER'),
  ).action(async (fn: string, flags: ClientFlags) => {
    await withSession(flags, async (s) => {
      const r = await s.thaw<{ FunctionName: string; Version?: string; Stopped: number }>('POST', `/thaw/v1/functions/${encodeURIComponent(fn)}/drain`);
      if (s.json) printJson(r);
      else process.stdout.write(`stopped ${r.Stopped} environment${r.Stopped === 1 ? '' : 's'} of ${r.FunctionName}${r.Version === undefined ? '' : `:${r.Version}`}\n`);
    });
  });

  addClientOptions(
    program
      .command('rm')
      .description('delete a function (all of it), or one version with NAME:VERSION')
      .argument('<function>', 'NAME or NAME:VERSION'),
  ).action(async (fn: string, flags: ClientFlags) => {
    await withSession(flags, async (s) => {
      await s.lambda.send(new DeleteFunctionCommand({ FunctionName: fn }));
      if (s.json) printJson({ Deleted: fn });
      else process.stdout.write(`deleted ${fn}\n`);
    });
  });
}
