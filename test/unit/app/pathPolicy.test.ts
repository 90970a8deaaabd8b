// The web host's path rules: only inside its roots, symlinks resolved before the check, hidden folders in home
// refused except the Hugging Face cache; the desktop policy allows any path.
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { openPolicy, rootedPolicy } from '../../../src-main/api/pathPolicy'

function setup() {
  const base = mkdtempSync(path.join(tmpdir(), 'dpo-policy-'))
  const home = path.join(base, 'home')
  const data = path.join(base, 'data')
  const other = path.join(base, 'other')
  for (const d of [
    home,
    data,
    other,
    path.join(home, '.ssh'),
    path.join(home, '.cache', 'huggingface', 'hub'),
    path.join(home, 'models'),
  ])
    mkdirSync(d, { recursive: true })
  writeFileSync(path.join(home, '.ssh', 'id_rsa'), 'key')
  writeFileSync(path.join(other, 'x.json'), '[]')
  symlinkSync(other, path.join(home, 'models', 'escape'))
  const policy = rootedPolicy(
    [
      { label: 'Home', path: home },
      { label: 'Data', path: data },
    ],
    home,
  )
  return { base, home, data, other, policy }
}

describe('rootedPolicy (web host)', () => {
  it('allows paths inside the roots, including files not written yet', () => {
    const { home, data, policy } = setup()
    expect(policy.check(path.join(home, 'models'))).toBe(path.join(home, 'models'))
    expect(policy.check(path.join(data, 'exports', 'new', 'comparison.json'))).toBe(
      path.join(data, 'exports', 'new', 'comparison.json'),
    )
    expect(policy.check('models')).toBe(path.join(home, 'models'))
  })

  it('refuses paths outside the roots, by .. or by symlink', () => {
    const { home, other, policy } = setup()
    expect(() => policy.check(other)).toThrow(/outside the folders/)
    expect(() => policy.check(path.join(home, '..', 'other', 'x.json'))).toThrow(/outside/)
    expect(() => policy.check(path.join(home, 'models', 'escape', 'x.json'))).toThrow(/outside/)
    expect(() => policy.check('/etc/passwd')).toThrow(/DPO_STUDIO_ROOTS/)
  })

  it('says exactly how to allow a refused folder: serve --allow with the folder (a file: the folder it is in)', () => {
    const { other, policy } = setup()
    expect(() => policy.check(other)).toThrow(
      `To allow it, restart the server with: dpo-studio serve --allow ${other} (repeatable`,
    )
    expect(() => policy.check(path.join(other, 'x.json'))).toThrow(`dpo-studio serve --allow ${other} `)
    try {
      policy.check(path.join(other, 'x.json'))
    } catch (e) {
      expect((e as { details?: unknown }).details).toEqual({ path: path.join(other, 'x.json'), allow: other })
    }
    const allowed = rootedPolicy([{ label: other, path: other }], path.join(other, 'nohome'))
    expect(allowed.check(path.join(other, 'x.json'))).toBe(path.join(other, 'x.json'))
  })

  it('hides dot folders in home but not the Hugging Face cache', () => {
    const { home, policy } = setup()
    expect(() => policy.check(path.join(home, '.ssh', 'id_rsa'))).toThrow(/hidden folders/)
    expect(policy.check(path.join(home, '.cache', 'huggingface', 'hub'))).toBe(
      path.join(home, '.cache', 'huggingface', 'hub'),
    )
  })

  it('checkTree: a folder inside the roots is refused when a file or subfolder in it links out, naming the link', () => {
    const { home, other, policy } = setup()
    const ds = path.join(home, 'dataset')
    mkdirSync(path.join(ds, 'sub'), { recursive: true })
    writeFileSync(path.join(ds, 'labelled_data.json'), '[]')
    expect(policy.checkTree(ds)).toBe(ds)
    symlinkSync(path.join(home, 'models'), path.join(ds, 'inside-link'))
    expect(policy.checkTree(ds)).toBe(ds)
    symlinkSync(path.join(other, 'x.json'), path.join(ds, 'sub', 'test_prompt.json'))
    expect(() => policy.checkTree(ds)).toThrow(
      `${path.join(ds, 'sub', 'test_prompt.json')} links outside the folders the web host may read; it is not opened`,
    )
    expect(openPolicy().checkTree(ds)).toBe(ds)
  })

  it('lists only roots that exist', () => {
    const { home, policy } = setup()
    expect(policy.roots().map((r) => r.path)).toContain(home)
    const p2 = rootedPolicy([{ label: 'Nope', path: '/definitely/not/here' }], home)
    expect(p2.roots()).toEqual([])
  })
})

describe('openPolicy (desktop)', () => {
  it('allows any path the user picked', () => {
    expect(openPolicy().check('/etc')).toBe('/etc')
    expect(openPolicy().restricted).toBe(false)
  })
})
