/**
 * What a function wrote, made safe to show to an operator. A function's output and log lines are its own bytes:
 * printed raw on a terminal, escape sequences in them would move the cursor, rewrite what was printed before,
 * set the window title, or (on some terminals) make the terminal answer as if the operator typed. Bidirectional
 * overrides would reorder what is shown. These are shown as visible escapes (\x1b, \u202e) instead.
 */

/** C0 controls except tab and newline, DEL, C1 controls, and the bidirectional embeddings, overrides and isolates. */
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
/** The same without the C0 range, which JSON.stringify already writes as \u00XX. */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

const hex = (c: string, width: number): string => (c.codePointAt(0) ?? 0).toString(16).padStart(width, '0');

/** `text` with every control character a terminal would act on written as an escape; tab and newline kept. */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, (c) => {
    if (c === '\r') return '\\r';
    const code = c.codePointAt(0) ?? 0;
    return code < 0x100 ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`;
  });
}

/**
 * A log message for a terminal: a runtime turns the newlines inside one message into \r (as Lambda's do), which a
 * terminal would draw over the line itself, so line breaks become indented continuation lines; everything else
 * a terminal would act on is escaped.
 */
export function escapeLogMessage(message: string): string {
  return escapeControls(message.replace(/\r\n?|\n/g, '\n    '));
}

/**
 * JSON text that is safe on a terminal and still the same JSON: the characters JSON.stringify leaves as they are
 * but a terminal acts on (DEL, C1 controls, bidirectional controls) can only occur inside strings, where \uXXXX
 * means the same character.
 */
export function terminalSafeJson(json: string): string {
  return json.replace(UNSAFE_IN_JSON, (c) => `\\u${hex(c, 4)}`);
}
