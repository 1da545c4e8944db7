// A minimal typed event emitter: `on` returns the function that unsubscribes.
//
// A listener that throws does not stop the others nor the emitter's owner: the
// error is reported through `queueMicrotask` (an uncaught error, visible in the
// console and to the host's handlers) instead of unwinding into protocol code.

/**
 * @template {Record<string, unknown>} Events map of event name to payload type
 */
export class Emitter {
  /** @type {Map<keyof Events, Set<(payload: any) => void>>} */
  #listeners = new Map();

  /**
   * Call `listener` with every `name` event until the returned function is called.
   *
   * @template {keyof Events} K
   * @param {K} name
   * @param {(payload: Events[K]) => void} listener
   * @returns {() => void} unsubscribe
   */
  on(name, listener) {
    let set = this.#listeners.get(name);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(name, set);
    }
    set.add(listener);
    return () => this.off(name, listener);
  }

  /**
   * Call `listener` with the next `name` event only.
   *
   * @template {keyof Events} K
   * @param {K} name
   * @param {(payload: Events[K]) => void} listener
   * @returns {() => void} unsubscribe
   */
  once(name, listener) {
    /** @param {Events[K]} payload */
    const wrapped = (payload) => {
      off();
      listener(payload);
    };
    const off = this.on(name, wrapped);
    return off;
  }

  /**
   * @template {keyof Events} K
   * @param {K} name
   * @param {(payload: Events[K]) => void} listener
   */
  off(name, listener) {
    this.#listeners.get(name)?.delete(listener);
  }

  /**
   * Call every listener of `name` with `payload`, in subscription order.
   *
   * @protected
   * @template {keyof Events} K
   * @param {K} name
   * @param {Events[K]} payload
   */
  emit(name, payload) {
    const set = this.#listeners.get(name);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        listener(payload);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /** Forget every listener. */
  removeAllListeners() {
    this.#listeners.clear();
  }
}
