import { ThawError } from '../util/errors.js';

export const DEFAULT_REGION = 'us-east-1';
export const ACCOUNT_ID = '000000000000';

const FUNCTION_REF =
  /^(?:arn:aws[a-zA-Z-]*:lambda:([a-z]{2}(?:-gov)?-[a-z]+-\d):)?(?:(\d{12}):)?(?:function:)?([a-zA-Z0-9_-]{1,64})(?::(\$LATEST|[a-zA-Z0-9_-]{1,128}))?$/;

export interface FunctionRef {
  readonly name: string;
  /** Qualifier carried in the name itself (`fn:prod`, `arn:...:function:fn:3`). */
  readonly qualifier?: string;
}

/** Parse a FunctionName path parameter: a name, partial ARN or full ARN, optionally qualified. */
export function parseFunctionRef(raw: string): FunctionRef {
  if (raw.length === 0 || raw.length > 170) {
    throw new ThawError('Validation', `1 validation error detected: Value '${raw}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 170`);
  }
  const m = FUNCTION_REF.exec(raw);
  if (!m) {
    throw new ThawError('Validation', `1 validation error detected: Value '${raw}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?`);
  }
  if (m[2] !== undefined && m[2] !== ACCOUNT_ID) {
    throw new ThawError('AccessDenied', `User is not authorized to access functions of account ${m[2]}`);
  }
  const name = m[3] as string;
  return m[4] === undefined ? { name } : { name, qualifier: m[4] };
}

/** Merge a qualifier from the name with the Qualifier query parameter; they must agree when both are given. */
export function resolveQualifier(ref: FunctionRef, query: string | undefined): string | undefined {
  if (query !== undefined && query !== '' && ref.qualifier !== undefined && query !== ref.qualifier) {
    throw new ThawError('InvalidParameterValue', 'The derived qualifier from the function name does not match the specified qualifier.');
  }
  const q = query !== undefined && query !== '' ? query : ref.qualifier;
  if (q !== undefined && !/^(\$LATEST|[a-zA-Z0-9_-]{1,128})$/.test(q)) {
    throw new ThawError('Validation', `1 validation error detected: Value '${q}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)`);
  }
  return q;
}

export const functionArn = (region: string, name: string, qualifier?: string): string =>
  `arn:aws:lambda:${region}:${ACCOUNT_ID}:function:${name}${qualifier === undefined ? '' : `:${qualifier}`}`;

export const isVersionNumber = (q: string): boolean => /^[1-9][0-9]*$/.test(q);
