import { ThawError } from '../util/errors.js';
import { MAX_UNZIPPED_WITH_LAYERS, type LayerVersionRecord } from '../control/layers.js';
import { treeBytes } from '../control/tree-size.js';
import type { ApiContext } from './context.js';

/**
 * Check the Layers of a function configuration (see LayerRegistry.forFunction) and that the function's code and
 * its layers together stay within Lambda's unzipped limit. `codeDir` is the function's extracted code.
 */
export async function checkFunctionLayers(ctx: ApiContext, arns: readonly string[], codeDir: string): Promise<void> {
  const layers = ctx.layers.forFunction(arns);
  await checkCombinedSize(layers, codeDir);
}

/** Function code plus layers (in whatever state) must unzip to at most 250 MB. */
export async function checkCombinedSize(layers: readonly LayerVersionRecord[], codeDir: string): Promise<void> {
  if (layers.length === 0) return;
  const total = layers.reduce((s, l) => s + l.unzippedSize, await treeBytes(codeDir));
  if (total > MAX_UNZIPPED_WITH_LAYERS) {
    throw new ThawError('InvalidParameterValue', `Function code combined with layers exceeds the maximum allowed size of ${MAX_UNZIPPED_WITH_LAYERS} bytes. The actual size is ${total} bytes.`);
  }
}
