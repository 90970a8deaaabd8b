// What the loaded addon gives a run when its caller passes nothing else: the engine version recorded in summaries and
// cache fingerprints, and cancel tokens that interrupt a running engine call. Both degrade to "none" where no addon
// loads (tests with a fake engine).
import { loadAddon } from '../../addon/loadAddon'
import type { NativeCancelToken } from '../../addon/addonTypes'

/** The loaded addon's version(), or 'unknown' where no addon loads. */
export function addonVersion(): string {
  try {
    return loadAddon().version()
  } catch {
    return 'unknown'
  }
}

/** new CancelToken() of the loaded addon, or null where no addon loads. */
export function addonCancelTokenFactory(): (() => NativeCancelToken) | null {
  try {
    const engine = loadAddon()
    return () => new engine.CancelToken()
  } catch {
    return null
  }
}
