/**
 * The only reader of config files and of the environment. A config is YAML, environment references
 * (${NAME} or ${NAME:-fallback}) are resolved in string values, and the result is validated once
 * against the schema, which fills every default.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, parseDocument, YAMLError } from 'yaml';
import { z } from 'zod';
import { HIDDEN_ATTRIBUTE_KEY, hiddenInMessages, identifiesPatient, namesAttribute } from './patient-values.js';
import { configSchema, type GantryConfig } from './schema.js';

/** The config `npm start` and `gantry serve` without --config use: config/gantry.yaml of the package. */
export const EMBEDDED_CONFIG_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'config', 'gantry.yaml');

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration in ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  config: GantryConfig;
  /** The file it came from. */
  source: string;
  /** True for the embedded default config (the one shipped in config/gantry.yaml). */
  embedded: boolean;
}

export interface LoadOptions {
  /** False for commands that never de-identify (status, queue ls, audit, quarantine ls and show):
   * a deid.secret that is one ${NAME} of a variable not set is then left out, not refused, so that
   * reading counts needs no copy of the key in the operator's shell (found in a review). */
  secretNeeded?: boolean;
}

export function loadConfigFile(path: string | undefined, env: NodeJS.ProcessEnv = process.env, options: LoadOptions = {}): LoadedConfig {
  const source = path ?? EMBEDDED_CONFIG_PATH;
  let text: string;
  try {
    text = readFileSync(source, 'utf8');
  } catch (error) {
    throw new ConfigError(source, [`cannot read the file: ${(error as Error).message}`]);
  }
  return { config: parseConfigText(text, source, env, options), source, embedded: path === undefined };
}

export function parseConfigText(text: string, source: string, env: NodeJS.ProcessEnv = process.env, options: LoadOptions = {}): GantryConfig {
  let raw: unknown;
  try {
    // Read as a document, not with parse(): parse() printed each warning (a tag it does not know,
    // `secret: !secret ...`) on stderr with the line quoted, secret and all, and took the value anyway
    // (found in a review). A warning is a problem of the file, named by its line like an error.
    // merge: `<<: *anchor` shares keys between entries (found in a review: refused as an unknown key "<<").
    // logLevel 'error': toJS() printed a warning quoting a key written as a collection (found in a review).
    const document = parseDocument(text, { merge: true, logLevel: 'error' });
    const [error] = document.errors;
    if (error) throw error;
    if (document.warnings.length > 0) throw new ConfigError(source, document.warnings.map((warning) => yamlProblem(warning, text)));
    raw = document.toJS() ?? {};
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(source, [yamlProblem(error as Error, text)]);
  }
  const problems: string[] = [];
  const scalars: ReadScalar[] = [];
  if (options.secretNeeded === false) dropUnsetSecret(raw, env);
  const resolved = resolveEnvironment(raw, [], env, problems, scalars);
  if (problems.length > 0) throw new ConfigError(source, problems);
  let result = configSchema.safeParse(resolved);
  // A reference read as a number or a boolean where the key takes text stays the text it was: an AE
  // title or a secret of digits (found in a review: `aeTitle: "${AE}"` with AE=1234 was refused).
  if (!result.success && restoreText(resolved, result.error.issues, scalars)) result = configSchema.safeParse(resolved);
  // A section whose keys are all commented out (`log:` over `# level: info`) is null to YAML: it takes
  // its defaults, as an absent one does (found in a review: "log: null is not allowed").
  if (!result.success && dropEmptySections(resolved, result.error.issues)) result = configSchema.safeParse(resolved);
  if (!result.success) throw new ConfigError(source, result.error.issues.map((issue) => describeIssue(issue, resolved)));
  const config = result.data;
  const level = env.GANTRY_LOG_LEVEL;
  if (level !== undefined && level !== '') {
    const levels = configSchema.shape.log.unwrap().shape.level;
    const parsed = levels.safeParse(level);
    if (!parsed.success) {
      throw new ConfigError(source, [`GANTRY_LOG_LEVEL: "${level}" is not allowed; allowed: ${levels.unwrap().options.join(', ')}`]);
    }
    config.log.level = parsed.data;
  }
  return config;
}

/** Leaves out deid.secret when it is one ${NAME} reference (no fallback) to a variable not set or empty. */
function dropUnsetSecret(raw: unknown, env: NodeJS.ProcessEnv): void {
  const deid = (raw as { deid?: unknown } | null)?.deid;
  if (typeof deid !== 'object' || deid === null) return;
  const secret = (deid as { secret?: unknown }).secret;
  const name = typeof secret === 'string' ? /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(secret)?.[1] : undefined;
  if (name !== undefined && (env[name] === undefined || env[name] === '')) delete (deid as { secret?: unknown }).secret;
}

/** A YAML error or warning by its line and its first line of text: the rest quotes the source. */
function yamlProblem(error: Error, text: string): string {
  const line = error instanceof YAMLError ? error.linePos?.[0].line : undefined;
  const where = line === undefined ? '' : ` at line ${line}`;
  // The yaml package's own text for it advises its programmers ("please use YAML.parseAllDocuments()").
  if (error instanceof YAMLError && error.code === 'MULTIPLE_DOCS') {
    return `not valid YAML${where}: a second YAML document begins here; a config is one document: remove the "---" line and merge what follows into the first`;
  }
  // In a flow collection ([ ] or { } on one line) "{" opens a mapping: ${NAME} there must be quoted
  // (found in a review: "Unexpected flow-map-start" said nothing of it).
  const quote = line !== undefined && /\$\{/.test(text.split(/\r?\n/)[line - 1] ?? '') && /[[{]/.test(text.split(/\r?\n/)[line - 1] ?? '')
    ? '; a ${NAME} reference inside [ ] or { } must be quoted: "${NAME}"'
    : '';
  return `not valid YAML${where}: ${(error.message.split('\n')[0] ?? '').replace(/:$/, '')}${quote}`;
}

/** ${NAME} or ${NAME:-fallback}; or `$${`, a `${` written as text (in a regular expression, a
 * secret), as in Docker Compose. */
const REFERENCE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const ESCAPED = '$${';

/** A value that was one whole ${NAME} reference and was read as a number or a boolean. */
interface ReadScalar {
  path: string[];
  text: string;
}

/** A whole value that is a shell's $NAME, refused as a reference without braces (config show writes
 * such a text $$NAME). */
export const SHELL_REFERENCE = /^\$([A-Za-z_][A-Za-z0-9_]*)$/;

/** Replaces ${NAME} references in every string value. A value that is one whole reference is read as
 * a YAML scalar, so `port: ${DICOM_PORT}` gives a number (noted in `scalars`, see restoreText). */
function resolveEnvironment(value: unknown, path: string[], env: NodeJS.ProcessEnv, problems: string[], scalars: ReadScalar[], within = new Set<object>()): unknown {
  if (typeof value === 'string') {
    let whole = false;
    const replaced = value.replace(REFERENCE, (match, name: string | undefined, fallback: string | undefined) => {
      if (match === ESCAPED || name === undefined) return '${';
      whole = match === value;
      // ${A:-${B}} (Docker Compose nests references) was read up to the first "}": the value of A and a
      // "}", or the text "${B" and a "}" (found in a review: the secret).
      if (fallback?.includes('${')) {
        problems.push(`${keyOf(path)}: the fallback of \${${name}} holds a reference; a fallback is text: set ${name}, or write the fallback without \${`);
        return '';
      }
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.push(`${keyOf(path)}: refers to the environment variable ${name}, which is ${found === '' ? 'set but empty' : 'not set'}; set it or write \${${name}:-fallback}`);
      return '';
    });
    // What is left of "${" after the references is one written wrong (${NAME:fallback}, ${SITE-NAME}, no
    // closing brace): taken as text, it became the value itself (found in a review: the secret).
    const malformed = /\$\{[^}]*\}?/.exec(value.replace(REFERENCE, ''));
    if (malformed) {
      const shown = /secret/i.test(keyOf(path)) ? '(hidden)' : JSON.stringify(malformed[0]);
      problems.push(`${keyOf(path)}: ${shown} is not an environment reference; write \${NAME} or \${NAME:-fallback} (NAME: letters, digits and _, not first a digit)`);
      return replaced;
    }
    // A shell's $NAME is no reference here: taken as text, a secret of "$GANTRY_DEID_SECRET" keyed
    // every pseudonym with a public string (found in a review). "$$NAME" writes the text "$NAME" (an
    // AE title or a secret may start with "$").
    if (value.startsWith('$$') && SHELL_REFERENCE.test(value.slice(1))) return value.slice(1);
    const shellStyle = SHELL_REFERENCE.exec(value);
    if (shellStyle) {
      problems.push(`${keyOf(path)}: $${shellStyle[1]} is not an environment reference here; write \${${shellStyle[1]}} (or \${${shellStyle[1]}:-fallback}), or $$${shellStyle[1]} for the text $${shellStyle[1]}`);
      return replaced;
    }
    if (!whole) return replaced;
    try {
      // logLevel 'error': a value that starts as a tag or a directive ("!...", "%...") made the yaml
      // package print a warning quoting it on stderr (found in a review: the secret).
      const scalar: unknown = parseYaml(replaced, { logLevel: 'error' });
      if (typeof scalar !== 'number' && typeof scalar !== 'boolean') return replaced;
      // 1e400 or .inf read as a number is Infinity: kept as the text, it is named as the variable held it.
      if (typeof scalar === 'number' && !Number.isFinite(scalar)) return replaced;
      scalars.push({ path, text: replaced });
      return scalar;
    } catch {
      return replaced;
    }
  }
  if (value === null || typeof value !== 'object') return value;
  // `&a [ *a ]` holds itself: walked, it overflowed the stack (found in a review: start-up ended with
  // "Maximum call stack size exceeded", no key named).
  if (within.has(value)) {
    problems.push(`${keyOf(path)}: a YAML alias refers to the list or mapping it is in (*name inside &name); write the value out`);
    return undefined;
  }
  within.add(value);
  try {
    if (Array.isArray(value)) return value.map((item, index) => resolveEnvironment(item, [...path, String(index)], env, problems, scalars, within));
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, resolveEnvironment(item, [...path, key], env, problems, scalars, within)]),
    );
  } finally {
    within.delete(value);
  }
}

/** Puts back the text of each scalar the schema wanted as a string; true when one was. */
function restoreText(resolved: unknown, issues: readonly z.core.$ZodIssue[], scalars: readonly ReadScalar[]): boolean {
  let restored = false;
  for (const issue of issues) {
    if (!wantedText(issue)) continue;
    const key = keyOf(issue.path);
    const scalar = scalars.find((candidate) => keyOf(candidate.path) === key);
    const parent = valueAt(resolved, issue.path.slice(0, -1));
    const last = issue.path.at(-1);
    if (!scalar || last === undefined || parent === null || typeof parent !== 'object') continue;
    (parent as Record<PropertyKey, unknown>)[last] = scalar.text;
    restored = true;
  }
  return restored;
}

/** Removes each section (a key of the config's nested mappings, outside lists) whose value is null where
 * the schema takes a mapping; true when one was. */
function dropEmptySections(resolved: unknown, issues: readonly z.core.$ZodIssue[]): boolean {
  let dropped = false;
  for (const issue of issues) {
    // Sections only, not a list entry's parts: an empty `when:` of a destination, taken as absent, would
    // send it every instance.
    if (issue.code !== 'invalid_type' || issue.expected !== 'object' || issue.path.some((key) => typeof key === 'number')) continue;
    const last = issue.path.at(-1);
    const parent = valueAt(resolved, issue.path.slice(0, -1));
    if (last === undefined || parent === null || typeof parent !== 'object' || Array.isArray(parent)) continue;
    if ((parent as Record<PropertyKey, unknown>)[last] !== null) continue;
    delete (parent as Record<PropertyKey, unknown>)[last];
    dropped = true;
  }
  return dropped;
}

/** The issue says the value should have been text: the key takes a string, or a union of which one
 * member does (allowedCallers: "AE@host" or { aeTitle, host }; callingAeTitle: one title or a list). */
function wantedText(issue: z.core.$ZodIssue): boolean {
  if (issue.code === 'invalid_type') return issue.expected === 'string';
  if (issue.code !== 'invalid_union') return false;
  return issue.errors.some((member) => member.some((inner) => inner.path.length === 0 && wantedText(inner)));
}

function keyOf(path: ReadonlyArray<PropertyKey>): string {
  if (path.length === 0) return '(top level)';
  return path.map((part, at) => (at > 0 && path[at - 1] === 'attributes' && !namesAttribute(String(part)) ? HIDDEN_ATTRIBUTE_KEY : String(part))).join('.');
}

function valueAt(root: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let node = root;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** Whether a value holds deid.secret: ${GANTRY_DEID_SECRET} written under another key by mistake, or
 * a YAML alias of it, printed the secret whole in the error (found in the secrets review). */
function holdsTheSecret(value: unknown, input: unknown): boolean {
  const secret = valueAt(input, ['deid', 'secret']);
  if (typeof secret !== 'string' || secret.trim() === '' || value === undefined) return false;
  // As JSON writes it too: a secret with " or \ is escaped in a list or an object.
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? '');
  return text.includes(secret.trim()) || text.includes(JSON.stringify(secret.trim()).slice(1, -1));
}

/** One line per problem: the key, the bad value, and what is allowed. Secrets are never echoed. */
function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const key = keyOf(issue.path);
  const bad = valueAt(input, issue.path);
  // JSON writes Infinity and NaN (YAML's .inf, .nan) as null.
  // The whole document is named by its kind, never echoed: it holds the secret.
  const shown =
    issue.path.length === 0
      ? Array.isArray(bad) ? 'a list' : `a ${typeof bad}`
      : mayHoldSecret(issue.path, bad) || aboutPatient(issue.path, bad) || holdsTheSecret(bad, input) ? '(hidden)' : typeof bad === 'number' && !Number.isFinite(bad) ? String(bad) : JSON.stringify(bad);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = allowedKeysAt(issue.path, input);
      return `${key}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}` +
        (allowed.length > 0 ? `; allowed keys: ${allowed.join(', ')}` : '');
    }
    case 'invalid_value':
      return `${key}: ${shown} is not allowed; allowed: ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_type': {
      if (bad === undefined) return `${key}: is required (expected ${issue.expected})`;
      // A number or a boolean in quotes is text to YAML: say that the quotes are what is wrong.
      const quoted =
        typeof bad === 'string' &&
        ((issue.expected === 'number' && bad.trim() !== '' && Number.isFinite(Number(bad))) || (issue.expected === 'boolean' && /^(true|false)$/.test(bad.trim())));
      return `${key}: ${shown} is not allowed; expected ${issue.expected}${quoted ? ': write it without quotes' : ''}`;
    }
    case 'too_big':
      return `${key}: ${shown} is not allowed; ${issue.inclusive === false ? 'less than' : 'at most'} ${String(issue.maximum)}${issue.origin === 'string' ? ' characters' : ''}`;
    case 'too_small': {
      // positive() is an exclusive bound: "at least 0" would name the refused value as allowed.
      // A string that is long enough until its spaces are trimmed (a host of " ") is blank: said so,
      // not "at least 1 characters" of a value that has one (found in the docs review).
      const blank = issue.origin === 'string' && typeof bad === 'string' && bad.length >= Number(issue.minimum) && bad.trim().length < Number(issue.minimum);
      return `${key}: ${shown} is not allowed; ${issue.inclusive === false ? 'more than' : 'at least'} ${String(issue.minimum)}${issue.origin === 'string' ? ` character${Number(issue.minimum) === 1 ? '' : 's'}` : ''}${blank ? ' other than spaces' : ''}`;
    }
    case 'invalid_union': {
      // A discriminated union (a rule's action) whose key takes none of its values: no member was
      // tried, so there are no forms to name; the values are (found in a review: "expected " and nothing).
      const choices = (issue as { options?: unknown }).options;
      if (issue.errors.length === 0 && Array.isArray(choices)) {
        const allowed = `allowed: ${choices.map((choice) => JSON.stringify(choice)).join(', ')}`;
        return bad === undefined ? `${key}: is required; ${allowed}` : `${key}: ${shown} is not allowed; ${allowed}`;
      }
      const forms = unionForms(issue);
      if (forms === undefined) return `${key}: ${shown} is not allowed; ${issue.message}`;
      return bad === undefined ? `${key}: is required (expected ${forms})` : `${key}: ${shown} is not allowed; expected ${forms}`;
    }
    default:
      return `${key}: ${shown} is not allowed; ${issue.message}`;
  }
}

/** The value is a secret's (its key says so), stands where deid.secret belongs (`deid: ${GANTRY_SECRET}`),
 * or holds a key that says secret (`deid:` written as a list): found in a review, the last two were
 * echoed whole. */
function mayHoldSecret(path: ReadonlyArray<PropertyKey>, bad: unknown): boolean {
  if (/secret/i.test(keyOf(path))) return true;
  if (path.length < SECRET_PATH.length && path.every((key, index) => key === SECRET_PATH[index])) return true;
  return holdsKey(bad, (key) => /secret/i.test(key));
}

const SECRET_PATH = ['deid', 'secret'] as const;

/** Whether the value holds, at any depth (up to 32 levels), a mapping with a key that passes `test`. */
function holdsKey(value: unknown, test: (key: string) => boolean, depth = 0): boolean {
  if (value === null || typeof value !== 'object' || depth > 32) return false;
  return Object.entries(value).some(([key, item]) => test(key) || holdsKey(item, test, depth + 1));
}

/** The value is a condition's on the patient (when.attributes.PatientID), or a condition's attributes
 * that name one: it may list identifiers (see patient-values.ts). */
function aboutPatient(path: ReadonlyArray<PropertyKey>, bad: unknown): boolean {
  // A condition written in the wrong form ("when: [PatientID, MRN...]"), or a value of the wrong form
  // holding one (rules written as a mapping): found in a review, both were echoed whole.
  if (path.includes('when') && identifiesPatient(JSON.stringify(bad) ?? '')) return true;
  // A mapping at any depth with a key about the patient (a condition's attributes).
  if (holdsKey(bad, identifiesPatient)) return true;
  const at = path.lastIndexOf('attributes');
  if (at < 0) return false;
  const reference = path[at + 1];
  // Attributes written as a list or a value (the keyword forgotten, `attributes: [MRN1, MRN2]`) hold
  // values only, and a condition on UIDs lists studies (found in the logs review: both were shown).
  return reference === undefined ? path.includes('when') || identifiesPatient(JSON.stringify(bad) ?? '') : hiddenInMessages(String(reference));
}

/** The types a union takes ("string or object"), when the value was of none of them. */
function unionForms(issue: z.core.$ZodIssueInvalidUnion): string | undefined {
  const forms = issue.errors.map((member) => member.find((inner) => inner.path.length === 0 && inner.code === 'invalid_type'));
  if (forms.some((form) => form === undefined)) return undefined;
  return [...new Set(forms.map((form) => (form as z.core.$ZodIssueInvalidType).expected))].join(' or ');
}

function allowedKeysAt(path: ReadonlyArray<PropertyKey>, input: unknown): string[] {
  let schema: unknown = configSchema;
  for (const [depth, key] of path.entries()) {
    schema = formWritten(unwrapSchema(schema), valueAt(input, path.slice(0, depth)));
    if (schema instanceof z.ZodObject) schema = (schema.shape as Record<string, unknown>)[String(key)];
    else if (schema instanceof z.ZodArray) schema = schema.element;
    else return [];
  }
  schema = formWritten(unwrapSchema(schema), valueAt(input, path));
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

/** Of a union, the object form the value was written in: the one whose fixed-choice keys (a rule's
 * action) take the value's; other schemas as they are. */
function formWritten(schema: unknown, value: unknown): unknown {
  if (!(schema instanceof z.ZodUnion)) return schema;
  const objects = (schema.options as unknown[]).map(unwrapSchema).filter((option): option is z.ZodObject => option instanceof z.ZodObject);
  const fields = (value !== null && typeof value === 'object' ? value : {}) as Record<string, unknown>;
  const takes = (object: z.ZodObject) =>
    Object.entries(object.shape).every(([key, field]) => !(field instanceof z.ZodLiteral || field instanceof z.ZodEnum) || field.safeParse(fields[key]).success);
  return objects.find(takes) ?? schema;
}

function unwrapSchema(schema: unknown): unknown {
  let current = schema;
  for (let depth = 0; depth < 8; depth += 1) {
    if (current instanceof z.ZodDefault || current instanceof z.ZodPrefault || current instanceof z.ZodOptional) {
      current = current.unwrap();
    } else if (current instanceof z.ZodPipe) {
      current = current.in;
    } else {
      return current;
    }
  }
  return current;
}
