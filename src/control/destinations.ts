import { ThawError } from '../util/errors.js';
import { ACCOUNT_ID } from './arn.js';

/** A Lambda function that receives invocation records or dead letters. */
export interface FunctionTarget {
  readonly name: string;
  readonly qualifier?: string;
}

const FUNCTION_ARN = /^arn:aws[a-zA-Z-]*:lambda:([a-z]{2}(?:-gov)?-[a-z]+-\d):(\d{12}):function:([a-zA-Z0-9_-]{1,64})(?::(\$LATEST|[a-zA-Z0-9_-]{1,128}))?$/;
const OTHER_SERVICE = /^arn:aws[a-zA-Z-]*:(sqs|sns|events|s3):/;
const SERVICE_NAMES: Readonly<Record<string, string>> = { sqs: 'Amazon SQS queues', sns: 'Amazon SNS topics', events: 'Amazon EventBridge event buses', s3: 'Amazon S3 buckets' };

/**
 * Check a destination (OnSuccess, OnFailure) or dead-letter target ARN. Thaw delivers to Lambda functions of
 * this account and region only; the other kinds AWS offers are refused with a message saying so.
 */
export function parseFunctionTarget(arn: string, region: string, owner: string, what: string): FunctionTarget {
  const other = OTHER_SERVICE.exec(arn);
  if (other !== null) {
    throw new ThawError('InvalidParameterValue', `${what}: Thaw has no ${SERVICE_NAMES[other[1] as string] ?? 'such service'}; use the ARN of a Lambda function (arn:aws:lambda:${region}:${ACCOUNT_ID}:function:NAME) instead of ${arn}.`);
  }
  const m = FUNCTION_ARN.exec(arn);
  if (m === null) throw new ThawError('InvalidParameterValue', `The destination ARN ${arn} is invalid.`);
  if (m[1] !== region || m[2] !== ACCOUNT_ID) {
    throw new ThawError('InvalidParameterValue', `${what}: the function ${arn} is not in this account (${ACCOUNT_ID}) and region (${region}).`);
  }
  const name = m[3] as string;
  if (name === owner) throw new ThawError('InvalidParameterValue', `${what}: you can't specify the function as a destination for itself.`);
  return m[4] === undefined ? { name } : { name, qualifier: m[4] };
}

/** The function of a stored (already validated) target ARN; undefined if it is not a function ARN. */
export function functionTargetOf(arn: string): FunctionTarget | undefined {
  const m = FUNCTION_ARN.exec(arn);
  if (m === null) return undefined;
  return m[4] === undefined ? { name: m[3] as string } : { name: m[3] as string, qualifier: m[4] };
}
