// Input is never changed silently and never echoed (issue 10 items 10-12): invalid UTF-8 and unknown chat roles are
// errors naming the row and field; malformed JSON names the row (JSONL line, JSON array element) and quotes nothing of
// the file; a model path that is a file or a symlink loop gets its own message. Built from the real HW6 files.
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadPromptsFile } from '../../src-main/services/data/promptsFile'
import { loadPreferenceData } from '../../src-main/services/data/preferenceFile'
import { checkModelDir } from '../../src-main/services/session/modelSession'
import { loadAdapter } from '../../src-main/services/training/adapterFiles'
import { sharedPath } from '../helpers/sharedPath'

const HW6_DATA = sharedPath('datasets', 'genai-hw6', 'labelled_data.json')
const tmp = mkdtempSync(path.join(os.tmpdir(), 'dpo-integrity-'))
const file = (name: string, content: string | Buffer) => {
  const f = path.join(tmp, name)
  writeFileSync(f, content)
  return f
}
const rejection = async (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e: unknown) => e as Error & { code: string; details: Record<string, unknown> },
  )

/** The real HW6 rows with one byte of row `row`'s `field` replaced by 0xFF (not UTF-8 anywhere). */
function corruptHw6(row: number, field: string): Buffer {
  const rows = JSON.parse(readFileSync(HW6_DATA, 'utf8')) as Array<Record<string, string>>
  const marker = '\u0001MARK\u0001'
  rows[row - 1]![field] = rows[row - 1]![field]!.slice(0, 3) + marker + rows[row - 1]![field]!.slice(3)
  const bytes = Buffer.from(JSON.stringify(rows, null, 2).replace(JSON.stringify(marker).slice(1, -1), 'MARK'), 'utf8')
  const at = bytes.indexOf('MARK')
  return Buffer.concat([bytes.subarray(0, at), Buffer.from([0xff]), bytes.subarray(at + 4)])
}

describe('invalid UTF-8', () => {
  it('in an HW6 array: an error naming the row and field, never U+FFFD in the data', async () => {
    const f = file('hw6-bad-utf8.json', corruptHw6(7, 'oppose'))
    const e = await rejection(loadPreferenceData(f))
    expect(e?.code).toBe('E_BAD_INPUT')
    expect(e?.message).toMatch(
      new RegExp(
        `^${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: row 7: field "oppose": invalid UTF-8 at byte \\d+; save the file as UTF-8$`,
      ),
    )
    expect(e?.details).toMatchObject({ row: 7, field: 'oppose' })
  })

  it('in a TRL conversational JSONL row: the line and the message field', async () => {
    const rows = [
      {
        prompt: [{ role: 'user', content: '你好' }],
        chosen: [{ role: 'assistant', content: '好' }],
        rejected: [{ role: 'assistant', content: '不好' }],
      },
      {
        prompt: [
          { role: 'system', content: '短答' },
          { role: 'user', content: 'QQQ' },
        ],
        chosen: '是',
        rejected: '否',
      },
    ]
    const text = Buffer.from(rows.map((r) => JSON.stringify(r)).join('\n') + '\n', 'utf8')
    const at = text.indexOf('QQQ')
    const bytes = Buffer.concat([text.subarray(0, at), Buffer.from([0xe4, 0xbd]), text.subarray(at + 3)]) // a cut-off 3-byte character
    const e = await rejection(loadPreferenceData(file('trl-bad.jsonl', bytes)))
    expect(e?.message).toMatch(/: row 2: field "prompt\[2\]\.content": invalid UTF-8 at byte \d+/)
  })

  it('in a prompts file too (test_prompt.json layout)', async () => {
    const bytes = Buffer.concat([
      Buffer.from('[{"id": 1, "prompt": "ok"}, {"id": 2, "prompt": "a'),
      Buffer.from([0xc0, 0xaf]),
      Buffer.from('"}]'),
    ])
    const e = await rejection(loadPromptsFile(file('prompts-bad.json', bytes)))
    expect(e?.message).toMatch(/: row 2: field "prompt": invalid UTF-8/)
  })
})

describe('unknown chat roles', () => {
  it('a TRL row with role "wizard" is an error naming the row and field, not a question silently dropped', async () => {
    const rows = [
      { prompt: [{ role: 'user', content: '你支持嗎？' }], chosen: '支持', rejected: '反對' },
      {
        prompt: [
          { role: 'system', content: '短答' },
          { role: 'wizard', content: '真人化是否能改善？' },
        ],
        chosen: '能',
        rejected: '不能',
      },
    ]
    const e = await rejection(loadPreferenceData(file('wizard.json', JSON.stringify(rows))))
    expect(e?.message).toMatch(
      /: row 2: field "prompt" message 2 has role "wizard"; expected "system", "user" or "assistant"$/,
    )
    expect(e?.details).toMatchObject({ row: 2, field: 'prompt' })
  })
})

describe('malformed JSON: the row, never the content', () => {
  it('a JSON array broken in its third element names row 3 and the line', async () => {
    const rows = (JSON.parse(readFileSync(HW6_DATA, 'utf8')) as unknown[]).slice(0, 4)
    const parts = rows.map((r, i) =>
      i === 2 ? JSON.stringify(r, null, 2).replace('"oppose":', '"oppose" SECRET:') : JSON.stringify(r, null, 2),
    )
    const f = file('broken.json', `[\n${parts.join(',\n')}\n]`)
    const e = await rejection(loadPreferenceData(f))
    expect(e?.message).toMatch(/: row 3: not valid JSON at line \d+, column \d+: expected ':' after a field name$/)
    expect(e?.message).not.toContain('SECRET')
  })

  it('a file that is not JSON at all (a passwd-like file) is reported by position only', async () => {
    const f = file('passwd.jsonl', 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n')
    for (const load of [loadPromptsFile, loadPreferenceData]) {
      const e = await rejection(load(f))
      expect(e?.message).toBe(`${f}: row 1: not valid JSON at column 1: unexpected character (expected a value)`)
      expect(JSON.stringify(e?.details)).not.toContain('root:x')
    }
    const arr = file('passwd-array.json', '[root:x:0:0]')
    expect((await rejection(loadPromptsFile(arr)))?.message).toBe(
      `${arr}: row 1: not valid JSON at line 1, column 2: unexpected character (expected a value)`,
    )
  })
})

describe('paths that are not what they seem', () => {
  it('a model path that is a file, a symlink loop or missing: three different messages', () => {
    const f = file('model.safetensors', 'x')
    expect(() => checkModelDir(f)).toThrow(
      `${f} is a file, not a model directory (choose the folder that holds config.json)`,
    )
    const loop = path.join(tmp, 'loop')
    symlinkSync(loop, loop)
    expect(() => checkModelDir(loop)).toThrow(
      `model directory ${loop} is a symlink loop (a link that points back at itself)`,
    )
    expect(() => checkModelDir(path.join(tmp, 'nope'))).toThrow(
      `model directory ${path.join(tmp, 'nope')} does not exist`,
    )
    expect(() => loadAdapter(loop)).toThrow(/is a symlink loop/)
    expect(() => loadAdapter(f)).toThrow(/is a file, not an adapter directory/)
  })

  it('a dataset or prompts path that is a symlink loop says so', async () => {
    const loop = path.join(tmp, 'loop.json')
    symlinkSync(loop, loop)
    expect((await rejection(loadPreferenceData(loop)))?.message).toBe(
      `${loop}: is a symlink loop (a link that points back at itself)`,
    )
    expect((await rejection(loadPromptsFile(loop)))?.message).toBe(
      `${loop}: file is a symlink loop (a link that points back at itself)`,
    )
  })
})
