/**
 * Text from received data, peers or file names, as a command prints it to an operator's terminal:
 * control characters (C0, DEL, C1) shown as escapes (`\x1b`, `\n`, `\t`) instead of acting. A sender
 * could otherwise clear the screen, rewrite or forge lines of `gantry quarantine show` (the screen an
 * operator reads before releasing an instance), or set the window title or clipboard (found in the
 * injection review).
 */
const CONTROL = /[\x00-\x1f\x7f-\x9f]/g;
const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

export function terminalText(value: unknown): string {
  return String(value ?? '').replace(CONTROL, (character) => NAMED[character] ?? `\\x${character.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
