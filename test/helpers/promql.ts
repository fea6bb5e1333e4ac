/**
 * Enough of a PromQL parser to check the label names and values an expression uses against the
 * series Gantry exports: in selectors (`metric{label="v", other=~"a|b"}`), in the label lists of
 * by/without (against the labels of what is aggregated), on/ignoring (against both operands) and
 * group_left/group_right (against the "one" side), and the `le` histogram_quantile needs. It follows
 * the labels each sub-expression carries (an aggregation by (a, b) leaves a and b, a function keeps
 * its argument's, a one-to-one match on (l) leaves l), so a label lost on the way is caught too.
 *
 * It is not a validator (promtool checks the syntax of the alert rules): it parses what alerts and
 * dashboards use (selectors, ranges, subqueries, offset and @, functions, aggregations with a
 * parameter, binary operators with bool, on/ignoring and group_left/right, comments) and reports what
 * it cannot parse as a problem.
 */

/** What the checker knows of the exported series. */
export interface SeriesSchema {
  /** The label names of a series (with the target labels job and instance); undefined: not Gantry's. */
  labelsOf(series: string): ReadonlySet<string> | undefined;
  /** The values a label of a series can take, where that set is known. */
  valuesOf(series: string, label: string): readonly string[] | undefined;
}

export interface Analysis {
  /** Unknown label names, values a label cannot take, what could not be parsed. */
  problems: string[];
  /** The label names of the result's series (what {{ $labels.x }} and a legend's {{x}} can name);
   * undefined when not known (a series that is not Gantry's, a scalar, an expression not parsed). */
  labels: ReadonlySet<string> | undefined;
}

export function analyse(expr: string, schema: SeriesSchema): Analysis {
  const parser = new Parser(expr, schema);
  let labels: ReadonlySet<string> | undefined;
  try {
    const result = parser.parseAll();
    labels = result.type === 'vector' ? result.labels : undefined;
  } catch (error) {
    parser.problems.push(`cannot parse ${JSON.stringify(expr)}: ${(error as Error).message}`);
  }
  return { problems: [...new Set(parser.problems)], labels };
}

/** The problems of one expression: unknown label names, impossible values, what could not be parsed. */
export function labelProblems(expr: string, schema: SeriesSchema): string[] {
  return analyse(expr, schema).problems;
}

/** Checks a label's value (or regular expression) against the values it can take. */
export function valueProblem(series: string, label: string, op: string, value: string, values: readonly string[]): string | undefined {
  // A Grafana variable ($instance, ${destination}) takes its values at run time.
  if (value.includes('$')) return undefined;
  const known = `(${label} of ${series} is one of ${values.join(', ')})`;
  if (op === '=' || op === '!=') return values.includes(value) ? undefined : `${series}{${label}${op}"${value}"}: no such value ${known}`;
  // A plain alternation names values: every one must exist. Any other regular expression must match one.
  if (/^[A-Za-z0-9_]+(?:\|[A-Za-z0-9_]+)*$/.test(value)) {
    const unknown = value.split('|').filter((item) => !values.includes(item));
    return unknown.length === 0 ? undefined : `${series}{${label}${op}"${value}"}: no such value ${unknown.join(', ')} ${known}`;
  }
  let pattern: RegExp;
  try {
    pattern = new RegExp(`^(?:${value})$`);
  } catch {
    return `${series}{${label}${op}"${value}"}: not a regular expression`;
  }
  return values.some((item) => pattern.test(item)) ? undefined : `${series}{${label}${op}"${value}"}: matches no value ${known}`;
}

// --- tokens ---------------------------------------------------------------------------------------------

type TokenKind = 'ident' | 'number' | 'duration' | 'string' | 'op' | 'punct' | 'range' | 'eof';

interface Token {
  kind: TokenKind;
  text: string;
  /** A string's value, unquoted. */
  value?: string;
}

const OPERATORS = ['==', '!=', '<=', '>=', '=~', '!~', '<', '>', '+', '-', '*', '/', '%', '^', '='];

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let at = 0;
  while (at < expr.length) {
    const rest = expr.slice(at);
    const space = /^(?:\s+|#[^\n]*)/.exec(rest);
    if (space) {
      at += space[0].length;
      continue;
    }
    const char = rest[0] as string;
    if (char === '[') {
      // A range or subquery ([5m], [$__rate_interval], [1h:5m]): its label-free contents are skipped.
      const end = rest.indexOf(']');
      if (end < 0) throw new Error('unclosed [');
      tokens.push({ kind: 'range', text: rest.slice(0, end + 1) });
      at += end + 1;
      continue;
    }
    if (char === '"' || char === "'" || char === '`') {
      const match = (char === '`' ? /^`[^`]*`/ : char === '"' ? /^"(?:[^"\\]|\\.)*"/ : /^'(?:[^'\\]|\\.)*'/).exec(rest);
      if (!match) throw new Error(`unclosed string at ${at}`);
      tokens.push({ kind: 'string', text: match[0], value: unquote(match[0]) });
      at += match[0].length;
      continue;
    }
    const duration = /^(?:\d+(?:ms|[smhdwy]))+(?![A-Za-z0-9_:])/.exec(rest);
    if (duration) {
      tokens.push({ kind: 'duration', text: duration[0] });
      at += duration[0].length;
      continue;
    }
    const number = /^(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)/.exec(rest);
    if (number) {
      tokens.push({ kind: 'number', text: number[0] });
      at += number[0].length;
      continue;
    }
    const ident = /^[a-zA-Z_:$][a-zA-Z0-9_:]*/.exec(rest);
    if (ident) {
      tokens.push({ kind: 'ident', text: ident[0] });
      at += ident[0].length;
      continue;
    }
    const op = OPERATORS.find((candidate) => rest.startsWith(candidate));
    if (op) {
      tokens.push({ kind: 'op', text: op });
      at += op.length;
      continue;
    }
    if ('(){},@'.includes(char)) {
      tokens.push({ kind: 'punct', text: char });
      at += 1;
      continue;
    }
    throw new Error(`unexpected ${JSON.stringify(char)} at ${at}`);
  }
  tokens.push({ kind: 'eof', text: '' });
  return tokens;
}

function unquote(text: string): string {
  const body = text.slice(1, -1);
  if (text.startsWith('`')) return body;
  // Go's escapes; those of regular expressions (\\.) come out as the regex wants them (\.).
  return body.replace(/\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)/g, (_, escape: string) => {
    if (escape.length > 1) return String.fromCharCode(parseInt(escape.slice(1), 16));
    return ({ n: '\n', t: '\t', r: '\r', a: '\x07', b: '\b', f: '\f', v: '\v' } as Record<string, string>)[escape] ?? escape;
  });
}

// --- the parser -----------------------------------------------------------------------------------------

/** What an expression evaluates to; a vector carries its label names (undefined: not known). */
type Value =
  | { type: 'scalar' }
  | { type: 'string'; text: string }
  | { type: 'vector'; labels: ReadonlySet<string> | undefined; from: readonly string[] };

const SCALAR: Value = { type: 'scalar' };

const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio']);
/** Aggregations whose result keeps the labels of the series it picks. */
const SELECTING_AGGREGATIONS = new Set(['topk', 'bottomk', 'limitk', 'limit_ratio']);
const PRECEDENCE: ReadonlyMap<string, number> = new Map([
  ['or', 1],
  ['and', 2],
  ['unless', 2],
  ['==', 3],
  ['!=', 3],
  ['<=', 3],
  ['>=', 3],
  ['<', 3],
  ['>', 3],
  ['+', 4],
  ['-', 4],
  ['*', 5],
  ['/', 5],
  ['%', 5],
  ['atan2', 5],
  ['^', 6],
]);
const SET_OPERATORS = new Set(['and', 'or', 'unless']);

interface Matching {
  card: 'one-to-one' | 'group_left' | 'group_right';
  on: boolean;
  labels: string[];
  include: string[];
}

class Parser {
  readonly problems: string[] = [];
  private readonly tokens: Token[];
  private next = 0;

  constructor(
    expr: string,
    private readonly schema: SeriesSchema,
  ) {
    this.tokens = tokenize(expr);
  }

  parseAll(): Value {
    const result = this.expression(1);
    if (this.peek().kind !== 'eof') throw new Error(`unexpected ${JSON.stringify(this.peek().text)}`);
    return result;
  }

  // --- reading tokens ---

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.next + offset, this.tokens.length - 1)] as Token;
  }

  private take(): Token {
    const token = this.peek();
    if (token.kind !== 'eof') this.next += 1;
    return token;
  }

  private is(text: string, offset = 0): boolean {
    const token = this.peek(offset);
    return token.kind !== 'string' && token.kind !== 'eof' && token.text === text;
  }

  private expect(text: string): void {
    const token = this.take();
    if (token.text !== text || token.kind === 'string') throw new Error(`expected ${JSON.stringify(text)}, found ${JSON.stringify(token.text)}`);
  }

  /** `(a, b, "c")`: the label list of by, without, on, ignoring and group_left/right. */
  private labelList(): string[] {
    this.expect('(');
    const labels: string[] = [];
    while (!this.is(')')) {
      const token = this.take();
      if (token.kind !== 'ident' && token.kind !== 'string') throw new Error(`expected a label name, found ${JSON.stringify(token.text)}`);
      labels.push(token.value ?? token.text);
      if (!this.is(')')) this.expect(',');
    }
    this.expect(')');
    return labels;
  }

  // --- expressions ---

  private binaryOperator(): string | undefined {
    const token = this.peek();
    if (token.kind === 'op' && PRECEDENCE.has(token.text)) return token.text;
    if (token.kind === 'ident' && PRECEDENCE.has(token.text.toLowerCase())) return token.text.toLowerCase();
    return undefined;
  }

  private expression(minPrecedence: number): Value {
    let left = this.unary();
    for (;;) {
      const op = this.binaryOperator();
      const precedence = op === undefined ? undefined : PRECEDENCE.get(op);
      if (op === undefined || precedence === undefined || precedence < minPrecedence) return left;
      this.take();
      if (this.is('bool')) this.take();
      const matching: Matching = { card: 'one-to-one', on: false, labels: [], include: [] };
      let hasMatching = false;
      if (this.is('on') || this.is('ignoring')) {
        matching.on = this.take().text === 'on';
        matching.labels = this.labelList();
        hasMatching = true;
      }
      if (this.is('group_left') || this.is('group_right')) {
        matching.card = this.take().text as Matching['card'];
        if (this.is('(')) matching.include = this.labelList();
      }
      const right = this.expression(op === '^' ? precedence : precedence + 1);
      left = this.binary(op, left, right, hasMatching ? matching : undefined, matching.card !== 'one-to-one' ? matching : undefined);
    }
  }

  private unary(): Value {
    if (this.is('-') || this.is('+')) {
      this.take();
      return this.unary();
    }
    return this.postfix(this.primary());
  }

  /** Ranges, subqueries, offset and @ after an operand. */
  private postfix(value: Value): Value {
    for (;;) {
      if (this.peek().kind === 'range') this.take();
      else if (this.is('offset')) {
        this.take();
        if (this.is('-')) this.take();
        this.take();
      } else if (this.is('@')) {
        this.take();
        if (this.is('-')) this.take();
        const at = this.take();
        if (at.kind === 'ident') {
          this.expect('(');
          this.expect(')');
        }
      } else return value;
    }
  }

  private primary(): Value {
    const token = this.peek();
    if (token.kind === 'number' || token.kind === 'duration') {
      this.take();
      return SCALAR;
    }
    if (token.kind === 'string') {
      this.take();
      return { type: 'string', text: token.value ?? '' };
    }
    if (this.is('(')) {
      this.take();
      const inner = this.expression(1);
      this.expect(')');
      return inner;
    }
    if (this.is('{')) return this.selector(undefined);
    if (token.kind === 'ident') {
      const name = token.text;
      if (AGGREGATIONS.has(name.toLowerCase()) && (this.is('(', 1) || this.is('by', 1) || this.is('without', 1))) return this.aggregation();
      if (this.is('(', 1)) return this.call();
      if (/^(?:inf|nan)$/i.test(name)) {
        this.take();
        return SCALAR;
      }
      this.take();
      return this.selector(name);
    }
    throw new Error(`unexpected ${JSON.stringify(token.text || 'end of expression')}`);
  }

  /** `name{label op "value", …}`, either part optional. */
  private selector(name: string | undefined): Value {
    const matchers: Array<{ label: string; op: string; value: string }> = [];
    if (this.is('{')) {
      this.take();
      while (!this.is('}')) {
        const label = this.take();
        if (label.kind === 'string' && (this.is(',') || this.is('}'))) {
          // Prometheus 3: a quoted metric name alone inside the braces.
          matchers.push({ label: '__name__', op: '=', value: label.value ?? '' });
        } else {
          if (label.kind !== 'ident' && label.kind !== 'string') throw new Error(`expected a label name, found ${JSON.stringify(label.text)}`);
          const op = this.take();
          if (op.kind !== 'op' || !['=', '!=', '=~', '!~'].includes(op.text)) throw new Error(`expected a label matcher after ${label.text}, found ${JSON.stringify(op.text)}`);
          const value = this.take();
          if (value.kind !== 'string') throw new Error(`expected a quoted value for ${label.text}, found ${JSON.stringify(value.text)}`);
          matchers.push({ label: label.value ?? label.text, op: op.text, value: value.value ?? '' });
        }
        if (!this.is('}')) this.expect(',');
      }
      this.expect('}');
    }
    const series = name ?? matchers.find((matcher) => matcher.label === '__name__' && matcher.op === '=')?.value;
    if (series === undefined) throw new Error('a selector without a metric name');
    const labels = this.schema.labelsOf(series);
    if (labels === undefined) return { type: 'vector', labels: undefined, from: [series] };
    for (const { label, op, value } of matchers) {
      if (label === '__name__') continue;
      if (!labels.has(label)) {
        this.problems.push(`${series}{${label}${op}…}: ${series} has no label "${label}" (it has ${[...labels].sort().join(', ')})`);
        continue;
      }
      const values = this.schema.valuesOf(series, label);
      const problem = values === undefined ? undefined : valueProblem(series, label, op, value, values);
      if (problem) this.problems.push(problem);
    }
    return { type: 'vector', labels, from: [series] };
  }

  /** Reports the names of `names` that `value` does not carry. */
  private need(clause: string, names: readonly string[], value: Value): void {
    if (value.type !== 'vector' || value.labels === undefined) return;
    const labels = value.labels;
    for (const name of names) {
      if (!labels.has(name)) {
        this.problems.push(`${clause}: "${name}" is not a label of ${value.from.join(', ')} there (it has ${[...labels].sort().join(', ') || 'none'})`);
      }
    }
  }

  private aggregation(): Value {
    const name = this.take().text.toLowerCase();
    let grouping: { without: boolean; labels: string[] } | undefined;
    if (this.is('by') || this.is('without')) grouping = { without: this.take().text === 'without', labels: this.labelList() };
    this.expect('(');
    const args: Value[] = [this.expression(1)];
    while (this.is(',')) {
      this.take();
      args.push(this.expression(1));
    }
    this.expect(')');
    if (grouping === undefined && (this.is('by') || this.is('without'))) grouping = { without: this.take().text === 'without', labels: this.labelList() };
    const input = args.at(-1) as Value;
    if (input.type !== 'vector') return { type: 'vector', labels: new Set(), from: [] };
    if (grouping) this.need(`${name} ${grouping.without ? 'without' : 'by'} (${grouping.labels.join(', ')})`, grouping.labels, input);
    if (input.labels === undefined) return input;
    let labels: Set<string>;
    if (SELECTING_AGGREGATIONS.has(name)) labels = new Set(input.labels);
    else if (grouping === undefined) labels = new Set();
    else if (grouping.without) labels = new Set([...input.labels].filter((label) => !grouping.labels.includes(label)));
    else labels = new Set(grouping.labels);
    const parameter = args[0];
    if (name === 'count_values' && parameter?.type === 'string') labels.add(parameter.text);
    return { type: 'vector', labels, from: input.from };
  }

  private call(): Value {
    const name = this.take().text;
    this.expect('(');
    const args: Value[] = [];
    while (!this.is(')')) {
      args.push(this.expression(1));
      if (!this.is(')')) this.expect(',');
    }
    this.expect(')');
    const input = args.find((arg): arg is Extract<Value, { type: 'vector' }> => arg.type === 'vector');
    const strings = args.filter((arg): arg is Extract<Value, { type: 'string' }> => arg.type === 'string').map((arg) => arg.text);
    switch (name) {
      case 'vector':
        return { type: 'vector', labels: new Set(), from: [] };
      case 'scalar':
        return SCALAR;
      case 'absent':
      case 'absent_over_time':
        // Labels taken from the selector's equality matchers: not followed.
        return { type: 'vector', labels: undefined, from: input?.from ?? [] };
      case 'histogram_quantile':
      case 'histogram_fraction': {
        if (!input) return SCALAR;
        this.need(`${name}(…)`, ['le'], input);
        return input.labels === undefined ? input : { ...input, labels: new Set([...input.labels].filter((label) => label !== 'le')) };
      }
      case 'label_replace': {
        // label_replace(v, dst, replacement, src, regex)
        if (!input) return SCALAR;
        const [destination, , source] = strings;
        if (source) this.need(`label_replace(…, "${source}", …)`, [source], input);
        return input.labels === undefined || !destination ? input : { ...input, labels: new Set([...input.labels, destination]) };
      }
      case 'label_join': {
        // label_join(v, dst, separator, src…)
        if (!input) return SCALAR;
        const [destination, , ...sources] = strings;
        this.need(`label_join(…, ${sources.join(', ')})`, sources, input);
        return input.labels === undefined || !destination ? input : { ...input, labels: new Set([...input.labels, destination]) };
      }
      case 'sort_by_label':
      case 'sort_by_label_desc':
        if (input) this.need(`${name}(…)`, strings, input);
        return input ?? SCALAR;
      default:
        // rate, increase, delta, deriv, *_over_time, abs, clamp, round, …: the labels of the argument.
        return input ?? SCALAR;
    }
  }

  private binary(op: string, left: Value, right: Value, matching: Matching | undefined, grouping: Matching | undefined): Value {
    if (left.type !== 'vector' || right.type !== 'vector') return left.type === 'vector' ? left : right.type === 'vector' ? right : SCALAR;
    const from = [...new Set([...left.from, ...right.from])];
    if (matching) {
      const clause = `${op} ${matching.on ? 'on' : 'ignoring'} (${matching.labels.join(', ')})`;
      if (matching.on) {
        this.need(clause, matching.labels, left);
        this.need(clause, matching.labels, right);
      } else if (left.labels !== undefined && right.labels !== undefined) {
        this.need(clause, matching.labels, { type: 'vector', labels: new Set([...left.labels, ...right.labels]), from });
      }
    }
    if (grouping) {
      const one = grouping.card === 'group_left' ? right : left;
      if (grouping.include.length > 0) this.need(`${op} ${grouping.card} (${grouping.include.join(', ')})`, grouping.include, one);
    }
    if (left.labels === undefined || right.labels === undefined) return { type: 'vector', labels: undefined, from };
    let labels: Set<string>;
    if (SET_OPERATORS.has(op)) labels = op === 'or' ? new Set([...left.labels, ...right.labels]) : new Set(left.labels);
    else if (grouping) {
      const many = grouping.card === 'group_left' ? left : right;
      labels = new Set([...(many.labels as ReadonlySet<string>), ...grouping.include]);
    } else if (matching?.on) labels = new Set(matching.labels.filter((label) => (left.labels as ReadonlySet<string>).has(label)));
    else if (matching) labels = new Set([...left.labels].filter((label) => !matching.labels.includes(label)));
    else labels = new Set(left.labels);
    return { type: 'vector', labels, from };
  }
}
