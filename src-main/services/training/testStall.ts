// Test hook (only with DPO_STUDIO_TEST_HOOKS=1): DPO_STUDIO_TEST_STALL_AFTER_STEP=k makes training stop after step k
// is logged (and checkpointed, when due) and wait forever, so a test can kill the process at a known point.
import type { RunEvents } from '../../../src-shared/run/runTypes'

export async function stallForTest(step: number, ev: RunEvents): Promise<void> {
  if (process.env.DPO_STUDIO_TEST_HOOKS !== '1') return
  if (Number(process.env.DPO_STUDIO_TEST_STALL_AFTER_STEP) !== step) return
  ev.log?.(`test hook: stalled after step ${step}`)
  // A timer keeps the event loop (and so the process) alive until the test kills it.
  await new Promise<never>(() => setInterval(() => undefined, 60_000))
}
