// Type test (tsc --noEmit): the public API as a TypeScript user writes it.
// Never run; it only has to compile.

import {
  SyncKairosClient,
  SyncKairosError,
  remainingMs,
  type CreateSessionRequest,
  type DisplaySnapshot,
  type FieldError,
  type ConflictDetails,
  type SyncState,
} from '../../src/index.js';

export async function chessClock(white: string, black: string): Promise<() => void> {
  const client = new SyncKairosClient({ baseUrl: 'http://127.0.0.1:8080', reconnect: { maxDelayMs: 5_000 } });
  const body: CreateSessionRequest = {
    session_id: crypto.randomUUID(),
    sync_mode: 'per_participant',
    total_time_ms: 300_000,
    increment_ms: 2_000,
    participants: [
      { participant_id: white, total_time_ms: 300_000 },
      { participant_id: black, total_time_ms: 300_000 },
    ],
  };
  const created: SyncState = await client.createSession(body);
  const live = client.subscribe(created.session_id, { since: { version: 1, epoch: 'x' } });
  live.on('state', ({ state, kind, event }) => {
    const v: number = state.version;
    const k: 'sync' | 'update' = kind;
    const t: string | undefined = event?.type;
    void [v, k, t];
  });
  live.on('timeout', ({ participantId }) => void participantId);
  live.on('connection', ({ status, delayMs }) => void [status === 'reconnecting', delayMs]);
  try {
    const switched = await client.switchCycle(created.session_id, { currentParticipantId: white });
    const expired: string | undefined = switched.expired_participant_id;
    void expired;
  } catch (error) {
    if (error instanceof SyncKairosError && error.code === 'CONFLICT') {
      const details = error.details as ConflictDetails;
      void details.actual_version;
    } else if (error instanceof SyncKairosError && error.code === 'VALIDATION_ERROR') {
      void (error.details as FieldError[])[0].field;
    }
  }
  const left: number | null = remainingMs(created, client.clock.now(), white);
  void left;
  const estimate = await client.clock.sync();
  void [estimate.offsetMs, estimate.uncertaintyMs, client.clock.uncertaintyMs];
  return live.tick((snap: DisplaySnapshot | null) => void snap?.participants[0].remainingMs, {
    stepMs: 1_000,
  });
}
