/**
 * A configured value written as /regular expression/flags (destination conditions, de-identification
 * rules and profiles, pixel zones): one reading for all of them, so that what one refuses the others
 * refuse too (a2787ff added to conditions the g and y check zones already had).
 */

/** What a configured /regular expression/ gives, or undefined for a value that is not one. */
export type RegexValue =
  | { kind: 'pattern'; pattern: RegExp }
  | { kind: 'refused'; why: string }
  /** `why`: JavaScript's message, which quotes the expression; `reason`: what is wrong, without it
   * (for messages about a value that may identify a patient). */
  | { kind: 'invalid'; why: string; reason: string };

const REGULAR_EXPRESSION = /^\/(.*)\/([a-z]*)$/s;

export function regexValue(expected: string): RegexValue | undefined {
  const expression = REGULAR_EXPRESSION.exec(expected);
  if (!expression) return undefined;
  const flags = expression[2] ?? '';
  // g and y make a RegExp remember where its last match ended: of two instances with the same value,
  // the second failed the test (half a study routed nowhere, given another profile, or not redacted).
  if (/[gy]/.test(flags)) return { kind: 'refused', why: 'the flags g and y are not allowed (use i, m, s or u)' };
  try {
    return { kind: 'pattern', pattern: new RegExp(expression[1] ?? '', flags) };
  } catch (error) {
    const why = (error as Error).message;
    return { kind: 'invalid', why, reason: why.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '') };
  }
}
