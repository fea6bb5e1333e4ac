/** Runs tasks one at a time per key (e.g. per SOP Instance UID), and freely across keys. */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Whether a task of this key is running or waiting. */
  isHeld(key: string): boolean {
    return this.tails.has(key);
  }

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const current = previous.then(task, task);
    const tail = current.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await current;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
