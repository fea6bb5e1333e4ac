/**
 * Texts that go into logs or the index may quote UIDs (a peer's error comment, a file path under
 * storage.path): UIDs locate studies and must not be there. Gantry's own 2.25 UIDs have three
 * components, so anything of three or more dotted numbers goes, but for what only looks like one: the
 * tail of a section number ("PS3.4 C.4.2.1", not after a letter or a dot) and an IPv4 address (four
 * numbers up to 255: a destination that failed must stay named; found in a review).
 */
export function withoutUids(text: string): string {
  return text.replace(/(?<![\w.])\d+(\.\d+){2,}\b/g, (match) => (isIpv4(match) ? match : '<uid>'));
}

function isIpv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((part) => part.length <= 3 && Number(part) <= 255);
}

/** Failure reasons are stored and logged: free of UIDs and of quoted values ([...], "..." or '...': Node's
 * file system errors quote the path, and a file imported in place lives where its user put it, often
 * in a folder named after the patient). A quote runs to the last closing mark on its line, not the
 * first: a path or a name may hold the mark itself (O'BRIEN), and what followed it was kept. */
export function withoutValues(message: string, length = 200): string {
  return withoutUids(message).replace(/\[[^\n]*\]|"[^\n]*"|'[^\n]*'/g, '<value>').slice(0, length);
}

/**
 * A peer's Error Comment as it may be stored and logged: free of UIDs and of the values it quotes
 * ('...', "..." or [...], as PACS quote what they read; found in the logs review). Unlike
 * withoutValues, a quote ends at its first closing mark and needs no letter against it: an apostrophe
 * in "Can't store" or "archive's" opens none (a quoted O'BRIEN still ends at the mark before a space),
 * a tag in brackets stays, and a comment's explanation is what the operator needs (found in the
 * review of the session's diff: withoutValues left "Can<value>s disk is full").
 */
export function commentWithoutValues(comment: string, length = 200): string {
  // Control characters (terminal escapes, line breaks) go too: the comment is shown by gantry status
  // and queue ls (found in the injection review: an OSC sequence set the operator's window title).
  return withoutUids(comment.replace(/[\x00-\x1f\x7f-\x9f]+/g, ' '))
    .replace(/(?<!\w)'[^\n]*?'(?!\w)|"[^"\n]*"|\[[^\]\n]*\]/g, (quoted) => (/^\[[0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\]$/.test(quoted) ? quoted : '<value>'))
    .slice(0, length);
}

/** What a log line says of an error that escaped every handler: its message and stack without UIDs
 * or quoted values, since such an error may come from any parser that quotes what it read. */
export function escapedErrorFields(error: unknown): { err: string; stack?: string } {
  if (!(error instanceof Error)) return { err: withoutValues(String(error)) };
  return { err: withoutValues(error.message), ...(error.stack ? { stack: withoutValues(error.stack, 4000) } : {}) };
}
