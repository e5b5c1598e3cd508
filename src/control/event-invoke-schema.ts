import { z } from 'zod';

/**
 * Request bodies of the EventInvokeConfig operations (Put, Update) and of DeadLetterConfig, with the limits of
 * the Lambda API reference. Parse with parseInput (schema.ts) to answer Lambda's ValidationException.
 */

const destinationArn = z.string()
  .max(350, 'Member must have length less than or equal to 350')
  .regex(/^$|^arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)/, 'Member must satisfy regular expression pattern: ^$|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\\-])+:([a-z]{2}(-gov)?-[a-z]+-\\d{1})?:(\\d{12})?:(.*)');

const destination = z.object({ Destination: destinationArn.optional() });

export const EventInvokeConfigInput = z.object({
  MaximumRetryAttempts: z.number().int()
    .min(0, 'Member must have value greater than or equal to 0')
    .max(2, 'Member must have value less than or equal to 2')
    .optional(),
  MaximumEventAgeInSeconds: z.number().int()
    .min(60, 'Member must have value greater than or equal to 60')
    .max(21600, 'Member must have value less than or equal to 21600')
    .optional(),
  DestinationConfig: z.object({
    OnSuccess: destination.optional(),
    OnFailure: destination.optional(),
  }).optional(),
});
export type EventInvokeConfigInput = z.infer<typeof EventInvokeConfigInput>;

export const DeadLetterConfigInput = z.object({
  TargetArn: z.string().regex(/^(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)?$/, 'Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()').optional(),
});
