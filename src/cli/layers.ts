/** `thaw layer publish`, `thaw layer ls`: Lambda layers from the command line. */
import { readFile, stat } from 'node:fs/promises';
import { ListLayersCommand, PublishLayerVersionCommand, type LayersListItem } from '@aws-sdk/client-lambda';
import type { Command } from 'commander';
import { zipDirectory } from '../control/package.js';
import { addClientOptions, allPages, withSession, type ClientFlags } from './client.js';
import { CliError } from './errors.js';
import { printJson, shortTime, table } from './output.js';

/** A folder is packaged as `thaw deploy` packages one (deterministically); a .zip is sent as it is. */
async function layerZip(source: string): Promise<Buffer> {
  let st;
  try {
    st = await stat(source);
  } catch {
    throw new CliError(`${source} does not exist`);
  }
  if (st.isDirectory()) return zipDirectory(source);
  if (st.isFile() && source.toLowerCase().endsWith('.zip')) return readFile(source);
  throw new CliError(`${source} is neither a folder nor a .zip file`);
}

export function registerLayers(program: Command): void {
  const layer = program.command('layer').description('Lambda layers: content mounted at /opt for the functions that use them');

  addClientOptions(
    layer
      .command('publish')
      .description('publish a new version of a layer from a folder or a .zip; prints its version ARN')
      .argument('<name>', 'layer name')
      .argument('<source>', 'folder (packaged like `thaw deploy`) or .zip file')
      .option('--description <text>', 'version description')
      .option('--runtime <id...>', 'compatible runtimes (repeatable), e.g. nodejs24.x')
      .option('--license <text>', 'license information'),
  ).action(async (name: string, source: string, flags: ClientFlags & { description?: string; runtime?: string[]; license?: string }) => {
    const zip = await layerZip(source);
    await withSession(flags, async (s) => {
      const v = await s.lambda.send(new PublishLayerVersionCommand({
        LayerName: name,
        Content: { ZipFile: zip },
        ...(flags.description === undefined ? {} : { Description: flags.description }),
        ...(flags.runtime === undefined ? {} : { CompatibleRuntimes: flags.runtime as never[] }),
        ...(flags.license === undefined ? {} : { LicenseInfo: flags.license }),
      }));
      if (s.json) printJson(v);
      else process.stdout.write(`${v.LayerVersionArn ?? '-'}\n`);
    });
  });

  addClientOptions(layer.command('ls').description('list layers with their newest version')).action(async (flags: ClientFlags) => {
    await withSession(flags, async (s) => {
      const all = await allPages<LayersListItem>(async (marker) => {
        const page = await s.lambda.send(new ListLayersCommand({ ...(marker === undefined ? {} : { Marker: marker }), MaxItems: 50 }));
        return { items: page.Layers, next: page.NextMarker };
      });
      if (s.json) return printJson({ Layers: all });
      if (all.length === 0) return void process.stdout.write('no layers\n');
      process.stdout.write(table(
        ['NAME', 'VERSION', 'RUNTIMES', 'CREATED', 'DESCRIPTION'],
        all.map((l) => {
          const v = l.LatestMatchingVersion;
          return [l.LayerName ?? '-', String(v?.Version ?? '-'), v?.CompatibleRuntimes?.join(',') || '-', shortTime(v?.CreatedDate), v?.Description || '-'];
        }),
      ));
    });
  });
}
