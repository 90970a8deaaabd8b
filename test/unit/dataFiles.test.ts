// Prompts and preference files: the real HW6 files, JSONL and TRL layouts, the support_ratio rule, and error
// messages that name the file, row and field for malformed input.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { StudioError } from '../../src-main/services/errors'
import { loadPromptsFile } from '../../src-main/services/data/promptsFile'
import {
  buildPairs,
  loadPreferenceData,
  preferencePairs,
  type PreferenceRow,
} from '../../src-main/services/data/preferenceFile'
import { sharedPath } from '../helpers/sharedPath'

const HW6 = sharedPath('datasets', 'genai-hw6')

let tmp: string
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'dpo-data-'))
})
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true })
})

async function tmpFile(name: string, content: string): Promise<string> {
  const file = path.join(tmp, name)
  await writeFile(file, content, 'utf8')
  return file
}

/** The StudioError a promise rejects with. */
async function failure(p: Promise<unknown>): Promise<StudioError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  )
  expect(e).toBeInstanceOf(StudioError)
  expect((e as StudioError).code).toBe('E_BAD_INPUT')
  return e as StudioError
}

describe('real HW6 files', () => {
  it('loads test_prompt.json: 10 prompts with ids 1..10', async () => {
    const rows = await loadPromptsFile(path.join(HW6, 'test_prompt.json'))
    expect(rows).toHaveLength(10)
    expect(rows.map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    expect(rows[0]!.prompt).toBe('真人化是否能改善日本漫畫的全球可及性？')
  })

  it('loads labelled_data.json from the directory: 50 HW6 rows', async () => {
    const data = await loadPreferenceData(HW6)
    expect(data.format).toBe('hw6')
    expect(data.file).toBe(path.join(HW6, 'labelled_data.json'))
    expect(data.rows).toHaveLength(50)
    expect(data.rows[0]).toMatchObject({ id: 1, prompt: '日本動漫真人化是否有損原作形象？' })
    expect(data.rows.every((r) => r.support && r.oppose)).toBe(true)
  })

  it('buildPairs(50, 0.1): 5 rows prefer support, then 45 prefer oppose (the notebook rule)', async () => {
    const { rows } = await loadPreferenceData(path.join(HW6, 'labelled_data.json'))
    const pairs = buildPairs(rows, { dataSize: 50, supportRatio: 0.1 })
    expect(pairs).toHaveLength(50)
    expect(pairs.slice(0, 5).every((p) => p.position === 'support')).toBe(true)
    expect(pairs.slice(5).every((p) => p.position === 'oppose')).toBe(true)
    pairs.forEach((p, i) => {
      const row = rows[i]!
      expect(p.id).toBe(row.id)
      expect(p.prompt).toBe(row.prompt)
      expect([p.chosen, p.rejected]).toEqual(i < 5 ? [row.support, row.oppose] : [row.oppose, row.support])
    })
  })
})

describe('buildPairs arithmetic matches Python int(N*s)', () => {
  const rows: PreferenceRow[] = Array.from({ length: 100 }, (_, i) => ({
    id: i + 1,
    prompt: `q${i}`,
    support: 's',
    oppose: 'o',
  }))
  const supportCount = (n: number, s: number) =>
    buildPairs(rows, { dataSize: n, supportRatio: s }).filter((p) => p.position === 'support').length

  it('floors the double product as int() does', () => {
    expect(supportCount(50, 0.1)).toBe(5) // 5.000000000000001
    expect(supportCount(100, 0.29)).toBe(28) // 28.999999999999996
    expect(supportCount(100, 0.57)).toBe(56) // 56.99999999999999
    expect(supportCount(10, 0)).toBe(0)
    expect(supportCount(10, 1)).toBe(10)
  })

  it('clamps dataSize to the rows and validates its options', () => {
    expect(buildPairs(rows.slice(0, 7), { dataSize: 50, supportRatio: 0.5 })).toHaveLength(7)
    expect(() => buildPairs(rows, { dataSize: 0 })).toThrow(/dataSize/)
    expect(() => buildPairs(rows, { supportRatio: 1.5 })).toThrow(/supportRatio/)
    expect(() => buildPairs([{ id: 1, prompt: 'q', chosen: 'a', rejected: 'b' }])).toThrow(
      /row 1 \(id 1\): field "support" is missing/,
    )
  })
})

describe('prompts files', () => {
  it('reads JSONL with default ids = line numbers', async () => {
    const file = await tmpFile('p.jsonl', '{"prompt":"a"}\n\n{"id":"x","prompt":"b"}\n{"prompt":"c"}\n')
    expect(await loadPromptsFile(file)).toEqual([
      { id: 1, prompt: 'a' },
      { id: 'x', prompt: 'b' },
      { id: 4, prompt: 'c' },
    ])
  })

  it('reads a JSON array without ids', async () => {
    const file = await tmpFile('p.json', '\uFEFF[{"prompt":"a"},{"prompt":"b"}]')
    expect(await loadPromptsFile(file)).toEqual([
      { id: 1, prompt: 'a' },
      { id: 2, prompt: 'b' },
    ])
  })

  it('rejects an empty file', async () => {
    const file = await tmpFile('empty.json', '  \n')
    expect((await failure(loadPromptsFile(file))).message).toBe(`${file}: file is empty`)
  })

  it('rejects a missing file', async () => {
    const file = path.join(tmp, 'nope.json')
    expect((await failure(loadPromptsFile(file))).message).toBe(`${file}: file does not exist`)
  })

  it('rejects invalid JSON', async () => {
    const file = await tmpFile('bad.json', '[{"prompt": "a"},')
    // Where it breaks (the array's second element), never what the file holds.
    expect((await failure(loadPromptsFile(file))).message).toBe(
      `${file}: row 2: not valid JSON at line 1, column 18: unexpected end of the file`,
    )
  })

  it('rejects an invalid JSONL line, naming the row', async () => {
    const file = await tmpFile('bad.jsonl', '{"prompt":"a"}\n{"prompt":"b"}\n{"prompt": oops}\n')
    expect((await failure(loadPromptsFile(file))).message).toMatch(/: row 3: not valid JSON/)
  })

  it('rejects a prompt that is not a non-empty string, naming row, id and field', async () => {
    const file = await tmpFile('badprompt.json', '[{"id":1,"prompt":"ok"},{"id":7,"prompt":42}]')
    const err = await failure(loadPromptsFile(file))
    expect(err.message).toBe(`${file}: row 2 (id 7): field "prompt" must be a non-empty string`)
    expect(err.details).toMatchObject({ file, row: 2, id: 7, field: 'prompt' })
    const blank = await tmpFile('blank.jsonl', '{"prompt":"ok"}\n{"prompt":"   "}\n')
    expect((await failure(loadPromptsFile(blank))).message).toMatch(/row 2: field "prompt" must be a non-empty string/)
    const missing = await tmpFile('missing.jsonl', '{"question":"ok"}\n')
    expect((await failure(loadPromptsFile(missing))).message).toMatch(/row 1: field "prompt" is missing/)
  })

  it('rejects duplicate ids', async () => {
    const file = await tmpFile('dup.json', '[{"id":1,"prompt":"a"},{"id":2,"prompt":"b"},{"id":1,"prompt":"c"}]')
    expect((await failure(loadPromptsFile(file))).message).toBe(
      `${file}: row 3 (id 1): field "id" duplicates the id of row 1`,
    )
  })

  it('rejects a single pretty-printed object', async () => {
    const file = await tmpFile('obj.json', '{\n  "prompt": "a"\n}\n')
    expect((await failure(loadPromptsFile(file))).message).toMatch(/expected a JSON array of rows or JSONL/)
  })
})

describe('preference files', () => {
  it('reads TRL JSONL with string fields', async () => {
    const file = await tmpFile(
      'trl.jsonl',
      '{"prompt":"q1","chosen":"a","rejected":"b"}\n{"prompt":"q2","chosen":"c","rejected":"d"}\n',
    )
    const data = await loadPreferenceData(file)
    expect(data.format).toBe('trl')
    expect(data.conversational).toBe(false)
    expect(data.rows).toEqual([
      { id: 1, prompt: 'q1', chosen: 'a', rejected: 'b' },
      { id: 2, prompt: 'q2', chosen: 'c', rejected: 'd' },
    ])
    expect(preferencePairs(data)).toEqual([
      { id: 1, prompt: 'q1', chosen: 'a', rejected: 'b', position: null },
      { id: 2, prompt: 'q2', chosen: 'c', rejected: 'd', position: null },
    ])
  })

  it('reads TRL conversational rows: prompt messages kept, answers reduced to the assistant text', async () => {
    const row = {
      prompt: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hi?' },
      ],
      chosen: [{ role: 'assistant', content: 'hello' }],
      rejected: [
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'go ' },
            { type: 'text', text: 'away' },
          ],
        },
      ],
    }
    const file = await tmpFile('conv.json', JSON.stringify([row]))
    const data = await loadPreferenceData(file)
    expect(data.conversational).toBe(true)
    expect(data.rows[0]).toEqual({ id: 1, prompt: row.prompt, chosen: 'hello', rejected: 'go away' })
  })

  it('names the row and field of malformed TRL rows', async () => {
    const missing = await tmpFile(
      'm.jsonl',
      '{"prompt":"q1","chosen":"a","rejected":"b"}\n{"prompt":"q2","chosen":"c"}\n',
    )
    expect((await failure(loadPreferenceData(missing))).message).toBe(`${missing}: row 2: field "rejected" is missing`)
    const noAssistant = await tmpFile(
      'na.json',
      JSON.stringify([{ prompt: 'q', chosen: [{ role: 'user', content: 'x' }], rejected: 'b' }]),
    )
    expect((await failure(loadPreferenceData(noAssistant))).message).toMatch(
      /row 1: field "chosen" has no assistant message/,
    )
    const badMsg = await tmpFile(
      'bm.json',
      JSON.stringify([{ prompt: [{ role: 'user' }], chosen: 'a', rejected: 'b' }]),
    )
    expect((await failure(loadPreferenceData(badMsg))).message).toMatch(
      /row 1: field "prompt" message 1 must have a string "content"/,
    )
  })

  it('names the row, id and field of malformed HW6 rows', async () => {
    const file = await tmpFile(
      'hw6.json',
      JSON.stringify([
        { id: 1, prompt: 'q', support: 's', oppose: 'o' },
        { id: 2, prompt: 'q', support: '', oppose: 'o' },
      ]),
    )
    expect((await failure(loadPreferenceData(file))).message).toBe(
      `${file}: row 2 (id 2): field "support" must be a non-empty string`,
    )
  })

  it('rejects rows of neither layout and directories without labelled_data.json', async () => {
    const file = await tmpFile('neither.json', '[{"prompt":"q","answer":"a"}]')
    expect((await failure(loadPreferenceData(file))).message).toMatch(
      /row 1: expected fields "support" and "oppose" \(HW6 layout\) or "chosen" and "rejected"/,
    )
    const dir = path.join(tmp, 'emptydir')
    await mkdir(dir)
    expect((await failure(loadPreferenceData(dir))).message).toBe(`dataset directory ${dir} has no labelled_data.json`)
  })
})
