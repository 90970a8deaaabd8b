// The API's implementation, shared by the Electron main process and the web host: validated inputs (dispatch.ts)
// arrive here, paths pass the path policy, engine work goes to the host, the rest to the services.
import { existsSync, statSync } from 'node:fs'
import { mkdir, readdir, stat } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join } from 'node:path'
import type { AppInfo, EngineInfo, FsListing } from '../../src-shared/api/contract'
import type { ApiHandlers } from './dispatch'
import type { EngineHost } from '../host/engineHost'
import { loadRunNotebook } from '../host/training'
import { demoInfo } from '../services/demo'
import { StudioError } from '../services/errors'
import { hfHubCacheDir, listCachedModels } from '../services/models/hfCache'
import { inspectModel } from '../services/models/inspectModel'
import { exportsDir, resourcesDir, runsDir, sweepsDir } from './appPaths'
import { DatasetRegistry, openPrompts } from './datasets'
import { JobManager } from './jobs'
import type { PathPolicy } from './pathPolicy'
import { runAnswerTokens, runPairTokens, runPairs } from './insightsStore'
import {
  exportAdapter,
  exportComparison,
  listRuns,
  openRun,
  readExport,
  readMetrics,
  recoverOrphanedRuns,
} from './runStore'
import { listSweeps, openSweep, recoverOrphanedSweeps } from './sweepStore'
import { planResume } from '../services/training/resume'
import { EXPORT_MARKER } from '../services/export/exportFolder'
import { exportProject } from '../services/export/projectExport'

export interface Dialogs {
  open(opts: {
    kind: 'file' | 'directory' | 'fileOrDirectory'
    title: string
    defaultPath?: string | undefined
    filters?: Array<{ name: string; extensions: string[] }> | undefined
  }): Promise<string | null>
  save(opts: { title: string; defaultPath?: string | undefined }): Promise<string | null>
}

export interface ApiContext {
  platform: 'electron' | 'web'
  version: string
  dataDir: string
  host: EngineHost
  policy: PathPolicy
  emit: (e: import('../../src-shared/api/contract').ApiEvent) => void
  dialogs: Dialogs | null
}

export interface ApiService {
  handlers: ApiHandlers
  jobs: JobManager
}

export function createApi(ctx: ApiContext): ApiService {
  const datasets = new DatasetRegistry()
  let engineVersion: string | null = null
  const jobs = new JobManager(ctx.host, runsDir(ctx.dataDir), ctx.emit, () => engineVersion)
  const check = (p: string) => ctx.policy.check(p)
  /** A folder the readers open files in by name (model, dataset, run): every link in it is checked too. */
  const checkTree = (p: string) => ctx.policy.checkTree(p)

  /** An id (a folder under `parent`) or a folder path (through the path rules); every link in it is checked too. */
  const idOrPath = (parent: string, what: 'run' | 'sweep', value: string): string => {
    if (!isAbsolute(value) && !value.includes('/') && !value.includes('\\')) {
      const dir = join(parent, value)
      if (!existsSync(dir)) throw new StudioError('E_BAD_INPUT', `no ${what} ${value} in ${parent}`)
      return checkTree(dir)
    }
    return checkTree(value)
  }
  /** A run id (folder under runs/) or a run directory path. */
  const runDir = (run: string): string => idOrPath(runsDir(ctx.dataDir), 'run', run)
  /** A sweep id (folder under sweeps/) or a sweep folder path. */
  const sweepDir = (sweep: string): string => idOrPath(sweepsDir(ctx.dataDir), 'sweep', sweep)

  const engineInfo = async (): Promise<EngineInfo> => {
    const info = await ctx.host.call('engineInfo', {}).promise
    engineVersion = info.version
    return { ...info, host: ctx.host.status }
  }

  const handlers: ApiHandlers = {
    async appInfo(): Promise<AppInfo> {
      return {
        platform: ctx.platform,
        version: ctx.version,
        dataDir: ctx.dataDir,
        runsDir: runsDir(ctx.dataDir),
        exportsDir: exportsDir(ctx.dataDir),
        resourcesDir: resourcesDir(),
        nativeDialogs: ctx.dialogs !== null,
        training: (await loadRunNotebook()) !== null,
        demo: demoInfo(),
      }
    },
    engineInfo,
    async engineRestart() {
      return ctx.host.restart()
    },
    async modelsList() {
      const cacheDir = hfHubCacheDir()
      let models = await listCachedModels(cacheDir)
      if (ctx.policy.restricted)
        models = models.filter((m) => {
          try {
            check(m.dir)
            return true
          } catch {
            return false
          }
        })
      return { cacheDir, models }
    },
    async modelInspect({ dir }) {
      // "Supported" is the engine's own verdict, from the host process that loads models.
      return inspectModel(checkTree(dir), (d) => ctx.host.call('modelCheck', { dir: d, quant: 'nf4' }).promise)
    },
    async modelLoad({ dir, quant, backend }) {
      const abs = checkTree(dir)
      return ctx.host.call('modelLoad', { dir: abs, quant, backend }, (e) => {
        if (e.kind === 'loadProgress') ctx.emit({ type: 'modelLoad', dir: abs, fraction: e.fraction })
      }).promise
    },
    async datasetOpen({ path }) {
      return datasets.openDataset(checkTree(path))
    },
    async datasetRows({ datasetId, query, offset, limit }) {
      return datasets.rows(datasetId, query, offset, limit)
    },
    async datasetPairs({ datasetId, dataSize, supportRatio, offset, limit }) {
      return datasets.pairs(datasetId, dataSize, supportRatio, offset, limit)
    },
    async promptsOpen({ path }) {
      return openPrompts(check(path))
    },
    async generateStart({ modelDir, promptsPath, params }) {
      const prompts = (await openPrompts(check(promptsPath))).prompts
      return jobs.startGenerate({ modelDir: checkTree(modelDir), prompts, params })
    },
    async runStart({ modelDir, datasetPath, testPromptsPath, params }) {
      if (!(await loadRunNotebook()))
        throw new StudioError('E_UNSUPPORTED', 'this build has no DPO training service yet')
      const prompts = testPromptsPath ? (await openPrompts(check(testPromptsPath))).prompts : []
      if (engineVersion === null) await engineInfo().catch(() => null)
      return jobs.startRun({
        modelDir: checkTree(modelDir),
        datasetPath: checkTree(datasetPath),
        testPromptsPath: testPromptsPath ? check(testPromptsPath) : undefined,
        prompts,
        params,
      })
    },
    async runResume({ run }) {
      if (!(await loadRunNotebook()))
        throw new StudioError('E_UNSUPPORTED', 'this build has no DPO training service yet')
      const dir = runDir(run)
      if (engineVersion === null) await engineInfo().catch(() => null)
      // The checks a user can act on answer here, before anything of the run changes (the engine host checks again,
      // in full, checkpoint data included); the run's inputs must pass the path rules like any other path.
      const plan = planResume(dir, {}, engineVersion ?? undefined, true)
      const req = plan.request
      for (const p of [req.modelDir, req.datasetPath, ...(req.testPromptsPath ? [req.testPromptsPath] : [])]) check(p)
      const prompts = req.testPromptsPath ? (await openPrompts(req.testPromptsPath)).prompts : []
      const fromStep = plan.trainingDone ? Infinity : (plan.checkpointStep ?? 0)
      const metrics = (await readMetrics(dir)).filter((m) => m.step <= fromStep)
      return jobs.resumeRun({
        runDir: dir,
        modelDir: req.modelDir,
        datasetPath: req.datasetPath,
        testPromptsPath: req.testPromptsPath,
        prompts,
        metrics,
      })
    },
    async jobCancel({ jobId }) {
      return { cancelled: jobs.cancel(jobId) }
    },
    async jobActive() {
      return jobs.snapshot()
    },
    async runsList() {
      return listRuns(runsDir(ctx.dataDir))
    },
    async runOpen({ run }) {
      return openRun(runDir(run))
    },
    async runPairs({ run }) {
      return runPairs(runDir(run))
    },
    async runPairTokens({ run, index }) {
      return runPairTokens(runDir(run), index)
    },
    async runAnswerTokens({ run, index }) {
      return runAnswerTokens(runDir(run), index)
    },
    async sweepStart({ modelDir, datasetPath, testPromptsPath, params, ratios }) {
      if (!(await loadRunNotebook()))
        throw new StudioError('E_UNSUPPORTED', 'this build has no DPO training service yet')
      if (engineVersion === null) await engineInfo().catch(() => null)
      return jobs.startSweep({
        modelDir: checkTree(modelDir),
        datasetPath: checkTree(datasetPath),
        testPromptsPath: testPromptsPath ? check(testPromptsPath) : undefined,
        params,
        ratios,
        sweepsDir: sweepsDir(ctx.dataDir),
      })
    },
    async sweepsList() {
      return listSweeps(sweepsDir(ctx.dataDir))
    },
    async sweepOpen({ sweep }) {
      return openSweep(sweepDir(sweep))
    },
    async exportComparison({ run, path, overwrite }) {
      return exportComparison(runDir(run), check(path), engineVersion, overwrite)
    },
    async exportAdapter({ run, dir }) {
      return exportAdapter(runDir(run), check(dir))
    },
    // Where next (docs/where-next.md): the engine host folds and encodes; the project needs no engine.
    async exportMerged({ run, dir, overwrite, dtype, mergeInto }) {
      const r = await ctx.host.call('exportMerged', {
        runDir: runDir(run),
        outDir: check(dir),
        overwrite,
        dtype,
        mergeInto,
      }).promise
      return { path: r.path, metadataPath: join(r.path, EXPORT_MARKER), files: r.files }
    },
    async exportGguf({ run, dir, overwrite, types, lora }) {
      const r = await ctx.host.call('exportGguf', { runDir: runDir(run), outDir: check(dir), overwrite, types, lora })
        .promise
      return { path: r.path, metadataPath: join(r.path, EXPORT_MARKER), files: r.files }
    },
    async exportProject({ run, dir, overwrite, gpus }) {
      const r = await exportProject({ runDir: runDir(run), outDir: check(dir), overwrite, ...(gpus ? { gpus } : {}) })
      return { path: r.path, metadataPath: join(r.path, EXPORT_MARKER), files: r.files }
    },
    async importAdapter({ run, adapterDir }) {
      const from = runDir(run)
      // A new run beside the others: <run>-imported, -imported-2, ... (never an existing folder).
      let runId = `${basename(from)}-imported`
      for (let n = 2; existsSync(join(runsDir(ctx.dataDir), runId)); n++) runId = `${basename(from)}-imported-${n}`
      const r = await ctx.host.call('importAdapter', {
        adapterDir: check(adapterDir),
        runDir: from,
        outDir: join(runsDir(ctx.dataDir), runId),
      }).promise
      return { runId, path: r.path }
    },
    async exportRead({ path }) {
      return readExport(check(path))
    },
    async fsRoots() {
      return ctx.policy.roots()
    },
    async fsList({ dir, files }): Promise<FsListing> {
      const abs = check(dir)
      if (!existsSync(abs) || !statSync(abs).isDirectory())
        throw new StudioError('E_BAD_INPUT', `${abs} is not a folder`)
      const entries: FsListing['entries'] = []
      for (const name of (await readdir(abs)).sort((a, b) => a.localeCompare(b))) {
        if (name.startsWith('.')) continue
        const s = await stat(join(abs, name)).catch(() => null)
        if (!s || (!s.isDirectory() && (!files || !s.isFile()))) continue
        entries.push({
          name,
          path: join(abs, name),
          kind: s.isDirectory() ? 'dir' : 'file',
          size: s.isFile() ? s.size : 0,
        })
      }
      entries.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'dir' ? -1 : 1))
      let parent: string | null = dirname(abs)
      try {
        if (parent === abs) parent = null
        else check(parent)
      } catch {
        parent = null
      }
      return { dir: abs, parent, entries }
    },
    async dialogOpen(opts) {
      if (!ctx.dialogs)
        throw new StudioError(
          'E_UNSUPPORTED',
          'native dialogs exist only in the desktop app; type a path or browse the server folders',
        )
      return { path: await ctx.dialogs.open(opts) }
    },
    async dialogSave(opts) {
      if (!ctx.dialogs)
        throw new StudioError('E_UNSUPPORTED', 'native dialogs exist only in the desktop app; type a path')
      return { path: await ctx.dialogs.save(opts) }
    },
  }
  void mkdir(runsDir(ctx.dataDir), { recursive: true }).catch(() => undefined)
  // Runs left 'running' by a host that died (killed, crashed, closed) are marked failed now (docs/run-directory.md).
  void recoverOrphanedRuns(runsDir(ctx.dataDir)).catch(() => undefined)
  void recoverOrphanedSweeps(sweepsDir(ctx.dataDir)).catch(() => undefined)
  return { handlers, jobs }
}
