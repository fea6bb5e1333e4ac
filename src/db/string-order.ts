/**
 * The order of many strings, for writing rows in a table's key order (each B-tree leaf page then
 * visited once). A most-significant-digit radix sort on UTF-16 code units: the order of JavaScript's
 * `<`, which differs from SQLite's BINARY collation (UTF-8 bytes) only between astral characters and
 * U+E000..U+FFFF, a difference that costs locality, never correctness.
 *
 * Why not Array.prototype.sort: 100,000 pseudonym mappings (bench/persist's, 2-core VM) sorted by a
 * comparator in 34-45 ms, a third of persisting them; this orders the same in 18-25 ms. A comparison
 * sort compares the same leading characters again at every level; a radix pass reads each character
 * once per string and only as deep as strings share a prefix.
 */

/** Ranges this short are sorted by insertion instead of another radix pass (a pass counts, sums and
 * moves through its buckets: more than a few comparisons of a short range). */
const INSERTION_BELOW = 32;
/** Buckets of one pass: 0 for a string that has ended, 1 + the code unit below 256, and one bucket for
 * every code unit from 256 up, sorted by comparison (DICOM's default character repertoire is ASCII;
 * values in other scripts, names in CJK for instance, fall back to the comparison sort there). */
const ENDED = 0;
const WIDE = 257;
const BUCKETS = 258;

/**
 * The indexes of `keys` in ascending order of their keys; equal keys keep their input order (stable),
 * so that of two entries for one key the later one is also written later.
 */
export function stableStringOrder(keys: readonly string[]): Int32Array {
  return new RadixSort(keys).run();
}

class RadixSort {
  private readonly order: Int32Array;
  private readonly scratch: Int32Array;
  /** Each entry's bucket in the current pass. */
  private readonly buckets: Uint16Array;
  /** Per bucket: its count, then where it starts (relative to the range); zero between passes. */
  private readonly starts = new Int32Array(BUCKETS + 1);
  /** Per bucket: where its next entry goes. */
  private readonly next = new Int32Array(BUCKETS);
  /** The lowest and highest bucket of the last pass: a pass over digits touches 10 buckets, not 258. */
  private low = 0;
  private high = 0;

  constructor(private readonly keys: readonly string[]) {
    this.order = new Int32Array(keys.length);
    for (let i = 0; i < keys.length; i += 1) this.order[i] = i;
    this.scratch = new Int32Array(keys.length);
    this.buckets = new Uint16Array(keys.length);
  }

  run(): Int32Array {
    // Ranges still to sort, as (from, to, depth) triples: depth is the character index up to which
    // their keys are equal. Flat numbers rather than a tuple per range: no garbage per range.
    const pending: number[] = [0, this.keys.length, 0];
    while (pending.length > 0) {
      const depth = pending.pop() as number;
      const to = pending.pop() as number;
      const from = pending.pop() as number;
      if (to - from < INSERTION_BELOW) {
        insertionSort(this.order, this.keys, from, to);
        continue;
      }
      this.distribute(from, to, depth);
      for (let bucket = Math.max(this.low, ENDED + 1); bucket <= this.high; bucket += 1) {
        const first = from + (this.starts[bucket] as number);
        const end = from + (this.starts[bucket + 1] as number);
        if (end - first < 2) continue;
        if (bucket === WIDE) comparisonSort(this.order, this.keys, first, end);
        else pending.push(first, end, depth + 1);
      }
      this.starts.fill(0, this.low, this.high + 2);
    }
    return this.order;
  }

  /** One stable counting pass over order[from, to) by each key's code unit at `depth`; leaves in
   * `starts` where each bucket from `low` to `high` begins, relative to `from`, and the range's
   * length in starts[high + 1]. */
  private distribute(from: number, to: number, depth: number): void {
    const { order, keys, buckets, starts, next, scratch } = this;
    let low = BUCKETS;
    let high = 0;
    for (let i = from; i < to; i += 1) {
      const bucket = bucketOf(keys[order[i] as number] as string, depth);
      buckets[i] = bucket;
      starts[bucket] = (starts[bucket] as number) + 1;
      if (bucket < low) low = bucket;
      if (bucket > high) high = bucket;
    }
    let start = 0;
    for (let bucket = low; bucket <= high; bucket += 1) {
      const count = starts[bucket] as number;
      starts[bucket] = start;
      next[bucket] = start;
      start += count;
    }
    starts[high + 1] = start;
    for (let i = from; i < to; i += 1) {
      const bucket = buckets[i] as number;
      scratch[from + (next[bucket] as number)] = order[i] as number;
      next[bucket] = (next[bucket] as number) + 1;
    }
    order.set(scratch.subarray(from, to), from);
    this.low = low;
    this.high = high;
  }
}

function bucketOf(key: string, depth: number): number {
  if (depth >= key.length) return ENDED;
  const unit = key.charCodeAt(depth);
  return unit < 256 ? unit + 1 : WIDE;
}

/** Stable: an entry moves left only past strictly greater keys. */
function insertionSort(order: Int32Array, keys: readonly string[], from: number, to: number): void {
  for (let i = from + 1; i < to; i += 1) {
    const index = order[i] as number;
    const key = keys[index] as string;
    let j = i - 1;
    while (j >= from && (keys[order[j] as number] as string) > key) {
      order[j + 1] = order[j] as number;
      j -= 1;
    }
    order[j + 1] = index;
  }
}

/** Array.prototype.sort is stable (ES2019). */
function comparisonSort(order: Int32Array, keys: readonly string[], from: number, to: number): void {
  const range = Array.from(order.subarray(from, to));
  range.sort((a, b) => {
    const x = keys[a] as string;
    const y = keys[b] as string;
    return x < y ? -1 : x > y ? 1 : a - b;
  });
  order.set(range, from);
}
