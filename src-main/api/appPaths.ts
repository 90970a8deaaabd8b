// Where the app keeps its files: the data folder (runs, sweeps, exports), the bundled resources, and the built renderer.
// Shared by the desktop app, the web host and the CLI so all three see the same run history.
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { appRoot } from '../addon/loadAddon'

/** $DPO_STUDIO_DATA, else $XDG_DATA_HOME/dpo-studio, else ~/.local/share/dpo-studio. */
export function studioDataDir(): string {
  if (process.env.DPO_STUDIO_DATA) return resolve(process.env.DPO_STUDIO_DATA)
  const xdg = process.env.XDG_DATA_HOME
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.local', 'share'), 'dpo-studio')
}

export const runsDir = (data = studioDataDir()): string => join(data, 'runs')
export const sweepsDir = (data = studioDataDir()): string => join(data, 'sweeps')
export const exportsDir = (data = studioDataDir()): string => join(data, 'exports')
export const resourcesDir = (): string => join(appRoot(), 'resources')
export const rendererDir = (): string => join(appRoot(), 'out', 'renderer')

/** Extra roots the web host may read ($DPO_STUDIO_ROOTS, path-delimiter separated; tests add ../shared). */
export function extraRoots(): string[] {
  return (process.env.DPO_STUDIO_ROOTS ?? '')
    .split(process.platform === 'win32' ? ';' : ':')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => resolve(s))
}
