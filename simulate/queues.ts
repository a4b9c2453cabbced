/**
 * The surge simulation's two queues: the event queue (a binary heap of timed callbacks, ties in
 * the order they were scheduled, so a run is deterministic) and a first-in first-out queue with
 * O(1) shift (the ingest and inference queues, served in order).
 */

/** A minimal binary heap of timed callbacks; ties run in the order they were scheduled. */
export class EventQueue {
  private readonly heap: { t: number; seq: number; run: () => void }[] = [];
  private seq = 0;
  get size(): number {
    return this.heap.length;
  }
  push(t: number, run: () => void): void {
    const h = this.heap;
    h.push({ t, seq: this.seq++, run });
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }
  pop(): { t: number; run: () => void } | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined) return undefined;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(l, m)) m = l;
        if (r < h.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
  private less(a: number, b: number): boolean {
    const x = this.heap[a];
    const y = this.heap[b];
    if (x === undefined || y === undefined) return false;
    return x.t < y.t || (x.t === y.t && x.seq < y.seq);
  }
  private swap(a: number, b: number): void {
    const h = this.heap;
    const x = h[a];
    const y = h[b];
    if (x === undefined || y === undefined) return;
    h[a] = y;
    h[b] = x;
  }
}

/** A first-in first-out queue with O(1) shift. */
export class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head++];
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}
