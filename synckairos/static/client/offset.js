// Clock offset estimation from four-timestamp exchanges (pure: no I/O, no clock).
//
// Theory of operation
// -------------------
// One exchange gives t0 (client sends), t1 (server receives), t2 (server
// answers), t3 (client receives). With theta = server clock - client clock and
// one-way delays up >= 0 and down >= 0:
//
//     t1 = t0 + up + theta        t3 = t2 - theta + down
//
// so theta <= t1 - t0 and theta >= t2 - t3: every exchange brackets the true
// offset in an interval of width rtt = (t3 - t0) - (t2 - t1), centred on the
// classic NTP estimate ((t1 - t0) + (t2 - t3)) / 2. The bracket holds whatever
// the asymmetry of the path; only its centre is biased by it. Each bound is
// widened by the clocks' resolution (the server's timestamps are integer ms).
//
// Several exchanges are combined by intersecting their brackets: the truth
// lies in every one, so it lies in the intersection, which is never wider than
// the best single bracket and is usually much narrower (the upper bound comes
// from the exchange with the fastest way up, the lower from the one with the
// fastest way down). The estimate is the intersection's centre and the
// uncertainty its half-width: a hard bound, not a standard deviation.
//
// High-RTT exchanges are discarded first (queued behind other traffic, they
// add nothing but risk). If the brackets do not intersect (the client's clock
// stepped, or a clock lied), the estimate falls back to the median of the best
// exchanges with an uncertainty that covers their spread.
//
// `GET /v1/time` yields one server timestamp: it is the same exchange with
// t1 = t2.

/** @import { ClockSample, OffsetEstimate } from './index.js' */

/**
 * One exchange's bracket of the offset.
 *
 * @param {ClockSample} sample
 * @param {number} resolutionMs added to each side (timestamp granularity)
 * @returns {{low: number, high: number, rtt: number, offset: number}}
 */
export function bracket(sample, resolutionMs) {
  const { t0, t1, t2, t3 } = sample;
  const rtt = Math.max(0, t3 - t0 - (t2 - t1));
  const high = t1 - t0 + resolutionMs;
  const low = t2 - t3 - resolutionMs;
  return { low, high, rtt, offset: (t1 - t0 + (t2 - t3)) / 2 };
}

/**
 * Estimate the offset (server - client) from exchanges.
 *
 * @param {readonly ClockSample[]} samples at least one
 * @param {{keep?: number, resolutionMs?: number}} [options]
 *   keep: fraction of the samples kept, lowest RTT first (default 0.5, at least 1);
 *   resolutionMs: timestamp granularity added to each bound (default 1)
 * @returns {OffsetEstimate}
 */
export function estimateOffset(samples, options = {}) {
  if (samples.length === 0) throw new RangeError('estimateOffset: no samples');
  const keep = options.keep ?? 0.5;
  const resolutionMs = options.resolutionMs ?? 1;
  const brackets = samples
    .map((sample) => bracket(sample, resolutionMs))
    .sort((a, b) => a.rtt - b.rtt);
  const kept = brackets.slice(0, Math.max(1, Math.ceil(brackets.length * keep)));
  let low = -Infinity;
  let high = Infinity;
  for (const b of kept) {
    low = Math.max(low, b.low);
    high = Math.min(high, b.high);
  }
  const minRttMs = kept[0].rtt;
  if (low <= high) {
    return {
      offsetMs: (low + high) / 2,
      uncertaintyMs: (high - low) / 2,
      rttMs: minRttMs,
      samples: samples.length,
      used: kept.length,
      consistent: true,
    };
  }
  // Inconsistent brackets: median of the kept centres, widened to cover them all.
  const centres = kept.map((b) => b.offset).sort((a, b) => a - b);
  const mid = centres.length >> 1;
  const offsetMs = centres.length % 2 ? centres[mid] : (centres[mid - 1] + centres[mid]) / 2;
  let uncertaintyMs = 0;
  for (const b of kept) {
    uncertaintyMs = Math.max(uncertaintyMs, Math.abs(b.offset - offsetMs) + b.rtt / 2);
  }
  return {
    offsetMs,
    uncertaintyMs: uncertaintyMs + resolutionMs,
    rttMs: minRttMs,
    samples: samples.length,
    used: kept.length,
    consistent: false,
  };
}
