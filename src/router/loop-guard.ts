/**
 * Recursive loop detection for asynchronous chains, as Lambda does it for SQS and SNS loops: an event that
 * causes a destination or dead-letter delivery passes on its chain's count, and once a chain has made about 16
 * invocations the next one is stopped (not invoked, recorded) and the stopped event goes to the on-failure
 * destination (else the dead-letter target) of the function it was headed for: one such notice per event whose
 * deliveries were stopped, so a chain makes at most 16 invocations plus one notice per stopped branch.
 *
 * A chain branches when an event has both an on-failure destination and a dead-letter target (A → B twice, B → A
 * twice: 2^n events after n hops). Branches share what is left of the chain's 16 instead of each getting their
 * own, so that one event's whole tree makes at most 16 invocations (each with its retries), however it fans out.
 *
 * An event's `hops` says where it is: the tree below an event at `hops` may make MAX_CHAIN_INVOCATIONS - hops
 * invocations, itself included. A straight chain counts 0, 1, 2, ... like Lambda's. NOTICE marks a stopped event
 * handed to the on-failure destination or dead-letter target: it runs once, and nothing it leads to is delivered.
 */

/** Lambda stops a recursive loop after about 16 invocations. */
export const MAX_CHAIN_INVOCATIONS = 16;
/** The hops of a stopped event's delivery to its on-failure destination or dead-letter target. */
export const NOTICE_HOPS = MAX_CHAIN_INVOCATIONS;

/**
 * The hops of each of `n` follow-ups of an event at `hops`: what remains of the chain (after this event) shared
 * equally between them. At MAX_CHAIN_INVOCATIONS or more, the follow-ups are over the limit: stop them.
 */
export function followUpHops(hops: number, n: number): number {
  const left = MAX_CHAIN_INVOCATIONS - hops - 1;
  if (left <= 0 || n <= 0) return MAX_CHAIN_INVOCATIONS;
  return MAX_CHAIN_INVOCATIONS - Math.floor(left / n);
}

/** A notice (a stopped event handed on) or any event past the limit: its own outcome is delivered nowhere. */
export const isTerminal = (hops: number): boolean => hops >= NOTICE_HOPS;
