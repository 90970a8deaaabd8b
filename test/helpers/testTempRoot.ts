// vitest global setup: every temp folder a test run makes (os.tmpdir() in the tests, and in the dpo-tool, Python
// and Chromium processes they start, which inherit TMPDIR) goes into one folder per run, removed when the run ends.
// Tests make their models, runs and exports under the system temp folder and many leave them there on purpose (a
// failing test's files are the evidence); before this, repeated runs on one machine piled up tens of GB in /tmp.
// DPO_KEEP_TEST_TMP=1 keeps the folder (its path is printed) to look at after a failure.
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export default function setup(): () => void {
  const root = mkdtempSync(path.join(os.tmpdir(), 'dpo-tests-'))
  const previous = process.env.TMPDIR
  // Set before vitest starts its workers, so they and every process they spawn inherit it.
  process.env.TMPDIR = root
  return () => {
    if (previous === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = previous
    if (process.env.DPO_KEEP_TEST_TMP === '1') {
      console.log(`test temp folder kept: ${root}`)
      return
    }
    rmSync(root, { recursive: true, force: true })
  }
}
