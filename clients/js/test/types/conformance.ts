// Type test (tsc --noEmit): the hand-written declarations (src/index.d.ts)
// match the JavaScript implementation. Each line assigns an implementation to
// its declared type; a signature that drifted fails to compile.

import type * as Api from '../../src/index.js';
import { SyncKairosClient } from '../../src/client.js';
import { SyncedClock, httpTimeTransport, systemClock } from '../../src/clock.js';
import * as display from '../../src/display.js';
import { SyncKairosError } from '../../src/errors.js';
import { LiveSession } from '../../src/live.js';
import { bracket, estimateOffset } from '../../src/offset.js';
import { RestClient, websocketUrl } from '../../src/rest.js';
import { backoffDelay, DEFAULT_RECONNECT } from '../../src/backoff.js';

type Instance<C> = C extends abstract new (...args: any) => infer I ? I : never;
type Params<C> = C extends abstract new (...args: infer P) => any ? P : never;

// Instances: every declared member exists with a compatible type.
export const client: Api.SyncKairosClient = null as unknown as Instance<typeof SyncKairosClient>;
export const rest: Api.RestClient = null as unknown as Instance<typeof RestClient>;
export const clock: Api.SyncedClock = null as unknown as Instance<typeof SyncedClock>;
export const live: Api.LiveSession = null as unknown as Instance<typeof LiveSession>;
export const error: Api.SyncKairosError = null as unknown as Instance<typeof SyncKairosError>;

// Constructors accept what the declarations promise.
export const clientArgs: Params<typeof SyncKairosClient> = null as unknown as ConstructorParameters<typeof Api.SyncKairosClient>;
export const clockArgs: Params<typeof SyncedClock> = null as unknown as ConstructorParameters<typeof Api.SyncedClock>;
export const liveArgs: Params<typeof LiveSession> = null as unknown as ConstructorParameters<typeof Api.LiveSession>;

// Functions.
export const f1: typeof Api.estimateOffset = estimateOffset;
export const f2: typeof Api.bracket = bracket;
export const f3: typeof Api.backoffDelay = backoffDelay;
export const f4: typeof Api.websocketUrl = websocketUrl;
export const f5: typeof Api.httpTimeTransport = httpTimeTransport;
export const f6: typeof Api.remainingMs = display.remainingMs;
export const f7: typeof Api.elapsedMs = display.elapsedMs;
export const f8: typeof Api.isRunning = display.isRunning;
export const f9: typeof Api.snapshot = display.snapshot;
export const f10: typeof Api.msUntilNextChange = display.msUntilNextChange;
export const f11: typeof Api.turnElapsedMs = display.turnElapsedMs;
export const f12: typeof Api.liveElapsedMs = display.liveElapsedMs;
export const c1: typeof Api.systemClock = systemClock;
export const c2: typeof Api.DEFAULT_RECONNECT = DEFAULT_RECONNECT;
