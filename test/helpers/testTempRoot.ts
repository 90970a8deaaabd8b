// vitest global setup: every temp folder a test run makes (os.tmpdir() in the tests, and in the dpo-tool, Python
// and Chromium processes they start, which inherit TMPDIR) goes into one folder per run, removed when the run ends.
// Tests make their models, runs and exports under the system temp folder and many leave them there on purpose (a
// failing test's files are the evidence); before this, repeated runs on one machine piled up tens of GB in /tmp.
// DPO_KEEP_TEST_TMP=1 keeps the folder (its path is printed) to look at after a failure.
// The app's own cache (reference log-probs, docs/decisions.md) goes there too: DPO_STUDIO_CACHE points into the
// run's folder, so tests neither fill the user's ~/.cache/dpo-studio (300 entries after a few dozen runs) nor pass
// because an earlier run left an entry behind.
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export default function setup(): () => void {
  const root = mkdtempSync(path.join(os.tmpdir(), 'dpo-tests-'))
  const previous = { TMPDIR: process.env.TMPDIR, DPO_STUDIO_CACHE: process.env.DPO_STUDIO_CACHE }
  // Set before vitest starts its workers, so they and every process they spawn inherit them.
  process.env.TMPDIR = root
  process.env.DPO_STUDIO_CACHE = path.join(root, 'studio-cache')
  return () => {
    for (const [name, value] of Object.entries(previous)) {
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
    if (process.env.DPO_KEEP_TEST_TMP === '1') {
      console.log(`test temp folder kept: ${root}`)
      return
    }
    rmSync(root, { recursive: true, force: true })
  }
}
