// The staging folder of an export (docs/exports.md, "Where exports go"): a killed export's `.NAME.tmp-PID-TIME`
// folder is removed by the next export to the same target, and only when its marker proves it ours (this target, this
// host, a writer that is gone); folders that merely look like one, another target's, a live writer's are kept.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { EXPORT_MARKER, STAGING_MARKER, writeExportFolder } from '../../../src-main/services/export/exportFolder'
import { tempDir } from '../../helpers/modelFixtures'

/** The pid of a process that has ended. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', ''])
  return r.pid!
}

/** A staging folder as a killed export leaves it: the marker, a half-written export inside. */
function leftover(parent: string, name: string, marker: Record<string, unknown> | null): string {
  const dir = path.join(parent, name)
  mkdirSync(path.join(dir, 'export'), { recursive: true })
  writeFileSync(path.join(dir, 'export', 'model.safetensors'), 'half a file')
  if (marker) writeFileSync(path.join(dir, STAGING_MARKER), JSON.stringify(marker))
  return dir
}

describe('export staging folders', () => {
  it('builds the export in a marked staging folder and leaves nothing beside the target', async () => {
    const parent = tempDir('dpo-export-')
    const out = path.join(parent, 'out')
    let seen: { staging: string; marker: Record<string, unknown> } | undefined
    await writeExportFolder(out, 'project', false, {}, (tmp) => {
      const staging = path.dirname(tmp)
      seen = {
        staging: path.basename(staging),
        marker: JSON.parse(readFileSync(path.join(staging, STAGING_MARKER), 'utf8')),
      }
      writeFileSync(path.join(tmp, 'a.txt'), 'a')
    })
    expect(seen!.staging).toMatch(new RegExp(`^\\.out\\.tmp-${process.pid}-\\d+$`))
    expect(seen!.marker).toMatchObject({ target: out, pid: process.pid, host: hostname() })
    expect(readdirSync(parent)).toEqual(['out'])
    expect(readdirSync(out).sort()).toEqual(['a.txt', EXPORT_MARKER])
    expect(JSON.parse(readFileSync(path.join(out, EXPORT_MARKER), 'utf8')).files).toEqual(['a.txt'])
  })

  it("removes a killed export's staging folder at the next export to the same target, and nothing else", async () => {
    const parent = tempDir('dpo-export-')
    const out = path.join(parent, 'out')
    const dead = deadPid()
    const mine = { target: out, host: hostname(), created: '2026-01-01T00:00:00.000Z' }
    const stale = leftover(parent, `.out.tmp-${dead}-1`, { ...mine, pid: dead })
    const kept = [
      leftover(parent, `.out.tmp-${dead}-2`, null), // no marker: not provably ours
      leftover(parent, `.out.tmp-${dead}-3`, { ...mine, pid: dead, target: path.join(parent, 'other') }), // another target
      leftover(parent, `.out.tmp-${dead}-4`, { ...mine, pid: dead, host: `${hostname()}-elsewhere` }), // pid means nothing here
      leftover(parent, `.out.tmp-${process.pid}-5`, { ...mine, pid: process.pid }), // a live writer
      leftover(parent, `.out.tmp-${dead + 1}-6`, { ...mine, pid: dead }), // name and marker disagree
      leftover(parent, `.other.tmp-${dead}-7`, { ...mine, pid: dead }), // named for another target
      leftover(parent, `.out.tmp-${dead}-8-x`, { ...mine, pid: dead }), // not our name pattern
    ]
    writeFileSync(path.join(parent, `.out.tmp-${dead}-9`), 'a file, not a folder')

    await writeExportFolder(out, 'project', false, {}, (tmp) => writeFileSync(path.join(tmp, 'a.txt'), 'a'))
    expect(existsSync(stale)).toBe(false)
    for (const dir of kept) expect(existsSync(path.join(dir, 'export', 'model.safetensors')), dir).toBe(true)
    expect(existsSync(path.join(parent, `.out.tmp-${dead}-9`))).toBe(true)
    expect(readFileSync(path.join(out, 'a.txt'), 'utf8')).toBe('a')
  })

  it('removes nothing when the export is refused', async () => {
    const parent = tempDir('dpo-export-')
    const out = path.join(parent, 'out')
    mkdirSync(out)
    writeFileSync(path.join(out, 'notes.txt'), 'not ours')
    const dead = deadPid()
    const stale = leftover(parent, `.out.tmp-${dead}-1`, { target: out, host: hostname(), pid: dead, created: '' })
    await expect(writeExportFolder(out, 'project', true, {}, () => undefined)).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
    })
    expect(existsSync(stale)).toBe(true)
  })
})
