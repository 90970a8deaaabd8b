// Replays every committed TypeScript fuzz input (test/fuzz/regressions/<target>/: inputs that once broke the
// property, and test/fuzz/seeds/<target>/) through its target, plus the seeds made from the real files in
// ../shared: each must now give a valid result or a clean, coded error (docs/fuzzing.md). Fast: no fuzzing here.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { committedInputs, JS_FUZZ_DIR } from '../fuzz/corpusFiles'
import { expectCleanRefusal, PropertyViolation } from '../fuzz/property'
import { JS_TARGETS } from '../fuzz/targets/index'
import { StudioError } from '../../src-main/services/errors'
import { sharedDir } from '../helpers/sharedPath'

const scratch = mkdtempSync(path.join(os.tmpdir(), 'dpo-fuzz-replay-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

describe.each(JS_TARGETS.map((t) => [t.name, t] as const))('fuzz target %s', (name, target) => {
  const dir = path.join(scratch, name)
  const committed = [
    ...committedInputs(JS_FUZZ_DIR, 'regressions', name),
    ...committedInputs(JS_FUZZ_DIR, 'seeds', name),
  ]

  it('has committed or generated inputs to replay', () => {
    expect(committed.length + target.seeds(sharedDir()).length).toBeGreaterThan(0)
  })

  it.each(committed.map((c) => [path.relative(JS_FUZZ_DIR, c.file), c] as const))(
    '%s parses or is refused cleanly',
    async (_, c) => {
      mkdirSync(dir, { recursive: true })
      target.prepare(dir)
      await target.run(c.bytes, dir)
    },
  )

  it('its seeds from the real files parse or are refused cleanly', async () => {
    mkdirSync(dir, { recursive: true })
    target.prepare(dir)
    for (const seed of target.seeds(sharedDir())) await target.run(seed, dir)
  })
})

describe('the fuzz property', () => {
  it('flags a foreign exception, an uncoded error and a control character; accepts a clean refusal', () => {
    const rules = { codes: ['E_BAD_INPUT'], names: ['data.json'] }
    expect(() => expectCleanRefusal(new TypeError("Cannot read properties of null (reading 'x')"), rules)).toThrow(
      PropertyViolation,
    )
    expect(() => expectCleanRefusal(new StudioError('E_INTERNAL', 'data.json: broken'), rules)).toThrow(
      /instead of E_BAD_INPUT/,
    )
    expect(() => expectCleanRefusal(new StudioError('E_BAD_INPUT', 'data.json: row 1: "\u001b[31m"'), rules)).toThrow(
      /control character/,
    )
    expect(() => expectCleanRefusal(new StudioError('E_BAD_INPUT', 'something is wrong'), rules)).toThrow(
      /names none of/,
    )
    expect(() =>
      expectCleanRefusal(new StudioError('E_BAD_INPUT', 'data.json: bad', { details: { row: 3 } }), rules),
    ).toThrow(/row 3/)
    expect(() =>
      expectCleanRefusal(
        new StudioError('E_BAD_INPUT', 'data.json: row 3: field "prompt" is missing', {
          details: { row: 3, field: 'prompt' },
        }),
        rules,
      ),
    ).not.toThrow()
  })
})
