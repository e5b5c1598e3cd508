import { ThawError } from '../util/errors.js';

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Refuse (400) JSON nested deeper than `max`, before anything parses or stringifies it: V8 parses deep JSON,
 * but every recursive walk over the value afterwards (validation messages, JSON.stringify) overflows the stack.
 * A byte scan: brackets inside strings do not count; text that is not JSON is left to the parser.
 */
export function checkJsonDepth(body: Uint8Array, max: number): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as number;
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) throw new ThawError('InvalidRequestContent', `Could not parse request body into json: nesting deeper than ${max} levels`);
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
}
