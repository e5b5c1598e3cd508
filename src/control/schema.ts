import { z } from 'zod';
import { ThawError } from '../util/errors.js';
import { DeadLetterConfigInput } from './event-invoke-schema.js';

/**
 * Schemas for the control API's request bodies: the trust boundary. Shapes and limits follow the Lambda API
 * reference; constraint failures are answered as Lambda does (ValidationException, "1 validation error
 * detected: Value ... at '...' failed to satisfy constraint: ...").
 */

const name64 = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+');
const role = z.string().regex(/^arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role\/?[a-zA-Z_0-9+=,.@\-_/]+$/, 'Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+');
const handler = z.string().max(128, 'Member must have length less than or equal to 128').regex(/^[^\s]+$/, 'Member must satisfy regular expression pattern: [^\\s]+');
const memorySize = z.number().int()
  .min(128, 'Member must have value greater than or equal to 128')
  .max(10240, 'Member must have value less than or equal to 10240');
const timeout = z.number().int()
  .min(1, 'Member must have value greater than or equal to 1')
  .max(900, 'Member must have value less than or equal to 900');
const description = z.string().max(256, 'Member must have length less than or equal to 256');
const environment = z.object({
  Variables: z.record(z.string(), z.string()).optional(),
}).passthrough();
const ephemeralStorage = z.object({
  Size: z.number().int()
    .min(512, 'Member must have value greater than or equal to 512')
    .max(10240, 'Member must have value less than or equal to 10240'),
});
const snapStart = z.object({
  ApplyOn: z.enum(['PublishedVersions', 'None'], 'Member must satisfy enum value set: [PublishedVersions, None]'),
});
const architectures = z.array(z.enum(['x86_64', 'arm64'], 'Member must satisfy enum value set: [x86_64, arm64]')).max(1, 'Member must have length less than or equal to 1');
const tags = z.record(z.string(), z.string());
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'Member must be base64 encoded');

export const CreateFunctionInput = z.object({
  FunctionName: name64,
  Runtime: z.string().optional(),
  Role: role,
  Handler: handler.optional(),
  Code: z.object({
    ZipFile: base64.optional(),
    S3Bucket: z.string().optional(),
    S3Key: z.string().optional(),
    S3ObjectVersion: z.string().optional(),
    ImageUri: z.string().optional(),
  }),
  Description: description.optional(),
  Timeout: timeout.optional(),
  MemorySize: memorySize.optional(),
  Publish: z.boolean().optional(),
  PackageType: z.enum(['Zip', 'Image']).optional(),
  Environment: environment.optional(),
  Tags: tags.optional(),
  Architectures: architectures.optional(),
  EphemeralStorage: ephemeralStorage.optional(),
  SnapStart: snapStart.optional(),
  Layers: z.array(z.string()).optional(),
  DeadLetterConfig: DeadLetterConfigInput.optional(),
}).passthrough();
export type CreateFunctionInput = z.infer<typeof CreateFunctionInput>;

export const UpdateFunctionCodeInput = z.object({
  ZipFile: base64.optional(),
  S3Bucket: z.string().optional(),
  S3Key: z.string().optional(),
  ImageUri: z.string().optional(),
  Publish: z.boolean().optional(),
  DryRun: z.boolean().optional(),
  RevisionId: z.string().optional(),
  Architectures: architectures.optional(),
}).passthrough();
export type UpdateFunctionCodeInput = z.infer<typeof UpdateFunctionCodeInput>;

export const UpdateFunctionConfigurationInput = z.object({
  Runtime: z.string().optional(),
  Role: role.optional(),
  Handler: handler.optional(),
  Description: description.optional(),
  Timeout: timeout.optional(),
  MemorySize: memorySize.optional(),
  Environment: environment.optional(),
  EphemeralStorage: ephemeralStorage.optional(),
  SnapStart: snapStart.optional(),
  Layers: z.array(z.string()).optional(),
  DeadLetterConfig: DeadLetterConfigInput.optional(),
  RevisionId: z.string().optional(),
}).passthrough();
export type UpdateFunctionConfigurationInput = z.infer<typeof UpdateFunctionConfigurationInput>;

export const PublishVersionInput = z.object({
  CodeSha256: z.string().optional(),
  Description: description.optional(),
  RevisionId: z.string().optional(),
}).passthrough();

const routingConfig = z.object({
  AdditionalVersionWeights: z.record(z.string(), z.number().min(0, 'Member must have value greater than or equal to 0.0').max(1, 'Member must have value less than or equal to 1.0')).optional(),
}).passthrough();

export const CreateAliasInput = z.object({
  Name: z.string().regex(/^(?!^[0-9]+$)([a-zA-Z0-9-_]+)$/, 'Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)').max(128),
  FunctionVersion: z.string().regex(/^(\$LATEST|[0-9]+)$/, 'Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)'),
  Description: description.optional(),
  RoutingConfig: routingConfig.optional(),
}).passthrough();

export const UpdateAliasInput = z.object({
  FunctionVersion: z.string().regex(/^(\$LATEST|[0-9]+)$/, 'Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)').optional(),
  Description: description.optional(),
  RoutingConfig: routingConfig.optional(),
  RevisionId: z.string().optional(),
}).passthrough();

export const TagResourceInput = z.object({ Tags: tags }).passthrough();

const cors = z.object({
  AllowCredentials: z.boolean().optional(),
  AllowHeaders: z.array(z.string()).optional(),
  AllowMethods: z.array(z.string()).optional(),
  AllowOrigins: z.array(z.string()).optional(),
  ExposeHeaders: z.array(z.string()).optional(),
  MaxAge: z.number().int().min(0).max(86400).optional(),
}).passthrough();

export const FunctionUrlInput = z.object({
  AuthType: z.enum(['NONE', 'AWS_IAM'], 'Member must satisfy enum value set: [AWS_IAM, NONE]'),
  Cors: cors.optional(),
  InvokeMode: z.enum(['BUFFERED', 'RESPONSE_STREAM']).optional(),
}).passthrough();

export const UpdateFunctionUrlInput = FunctionUrlInput.partial();

/** Parse `body` with `schema`, or throw Lambda's ValidationException naming the first bad member. */
export function parseInput<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issues = r.error.issues;
  const parts = issues.slice(0, 5).map((i) => {
    const path = i.path.map((p) => (typeof p === 'string' ? p.charAt(0).toLowerCase() + p.slice(1) : String(p))).join('.');
    const value = valueAt(body, i.path);
    const shown = value === undefined ? 'null' : `'${typeof value === 'string' ? value : JSON.stringify(value)}'`;
    const constraint = i.code === 'invalid_type' && value === undefined ? 'Member must not be null' : i.message;
    return `Value ${shown} at '${path}' failed to satisfy constraint: ${constraint}`;
  });
  throw new ThawError('Validation', `${parts.length} validation error${parts.length > 1 ? 's' : ''} detected: ${parts.join('; ')}`);
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}
