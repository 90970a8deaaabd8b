// The web host's path rules reach every file a reader opens (issue 10 item 10): a folder inside the allowed roots
// whose test_prompt.json, labelled_data.json or tokenizer.json links to a file outside them (the real /etc/passwd)
// is refused, naming the link; links that stay inside the roots (Hugging Face cache style) still work; and no error
// ever quotes a file that failed to parse. Against a real `serve` child with HOME as its only user root.
import { copyFileSync, cpSync, mkdirSync, readdirSync, renameSync, symlinkSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tempDir } from '../helpers/modelFixtures'
import { repoRoot, sharedPath } from '../helpers/sharedPath'
import { ApiClient, startServe, type ServeChild } from '../helpers/webClient'

const PASSWD = '/etc/passwd'
let home: string
let serve: ServeChild
let api: ApiClient

/** The API's rejection (code and message) for a call that must fail. */
async function refusal(method: string, input: unknown): Promise<{ code: string; message: string }> {
  return api.call(method, input).then(
    () => ({ code: 'none', message: 'the call succeeded' }),
    (e: { code: string; message: string }) => ({ code: e.code, message: e.message }),
  )
}

beforeAll(async () => {
  home = tempDir('dpo-home-')
  // A dataset folder whose test prompts link out of the roots, and one whose data does.
  const ds1 = path.join(home, 'data1')
  mkdirSync(ds1)
  copyFileSync(sharedPath('datasets/genai-hw6/labelled_data.json'), path.join(ds1, 'labelled_data.json'))
  symlinkSync(PASSWD, path.join(ds1, 'test_prompt.json'))
  const ds2 = path.join(home, 'data2')
  mkdirSync(ds2)
  symlinkSync(PASSWD, path.join(ds2, 'labelled_data.json'))
  // A model folder whose tokenizer links out, and one laid out like the HF cache (links into blobs/ inside home).
  const m1 = path.join(home, 'model1')
  cpSync(path.join(repoRoot, 'resources/demo-model'), m1, { recursive: true })
  const tokenizer = path.join(m1, 'tokenizer.json')
  renameSync(tokenizer, path.join(home, 'tokenizer-real.json'))
  symlinkSync(PASSWD, tokenizer)
  const blobs = path.join(home, 'hub', 'blobs')
  const snap = path.join(home, 'hub', 'snapshots', 'abc')
  mkdirSync(blobs, { recursive: true })
  mkdirSync(snap, { recursive: true })
  for (const f of readdirSync(path.join(repoRoot, 'resources/demo-model'))) {
    copyFileSync(path.join(repoRoot, 'resources/demo-model', f), path.join(blobs, `blob-${f}`))
    symlinkSync(path.join('..', '..', 'blobs', `blob-${f}`), path.join(snap, f))
  }
  // A "prompts" file inside the roots that is not JSON at all.
  copyFileSync(PASSWD, path.join(home, 'prompts.json'))

  serve = await startServe(tempDir('dpo-serve-'), { HOME: home, DPO_STUDIO_ROOTS: '' })
  api = await ApiClient.open(serve.port, serve.token)
})

afterAll(async () => {
  api?.close()
  serve?.child.kill('SIGTERM')
  await serve?.exited
})

describe('web host: files inside allowed folders that link outside', () => {
  it('refuses a dataset whose test_prompt.json links to /etc/passwd, naming the link and quoting nothing', async () => {
    const r = await refusal('datasetOpen', { path: path.join(home, 'data1') })
    expect(r.code).toBe('E_FORBIDDEN')
    expect(r.message).toBe(
      `${path.join(home, 'data1', 'test_prompt.json')} links outside the folders the web host may read; it is not opened`,
    )
    expect(r.message).not.toMatch(/root:|nologin/)
  })

  it('refuses a dataset folder whose labelled_data.json links out', async () => {
    const r = await refusal('datasetOpen', { path: path.join(home, 'data2') })
    expect(r).toMatchObject({
      code: 'E_FORBIDDEN',
      message: expect.stringContaining('labelled_data.json links outside'),
    })
    const direct = await refusal('datasetOpen', { path: path.join(home, 'data2', 'labelled_data.json') })
    expect(direct.code).toBe('E_FORBIDDEN')
  })

  it('refuses a model folder whose tokenizer.json links out, for inspecting, loading and training', async () => {
    const dir = path.join(home, 'model1')
    for (const [method, input] of [
      ['modelInspect', { dir }],
      ['modelLoad', { dir }],
      ['runStart', { modelDir: dir, datasetPath: path.join(home, 'data1', 'labelled_data.json'), params: {} }],
    ] as const) {
      const r = await refusal(method, input)
      expect(r.code, method).toBe('E_FORBIDDEN')
      expect(r.message).toContain('tokenizer.json links outside')
    }
  })

  it('still opens a model whose files are links that stay inside the roots (Hugging Face cache layout)', async () => {
    const info = await api.call('modelInspect', { dir: path.join(home, 'hub', 'snapshots', 'abc') })
    expect(info).toMatchObject({ architecture: 'LlamaForCausalLM', hasTokenizer: true })
  })

  it('a file inside the roots that is not JSON is reported by position, never quoted', async () => {
    const r = await refusal('promptsOpen', { path: path.join(home, 'prompts.json') })
    expect(r.code).toBe('E_BAD_INPUT')
    expect(r.message).toMatch(/prompts\.json: row 1: not valid JSON at column 1/)
    expect(r.message).not.toMatch(/root|bash|nologin/)
  })
})
