// Why a path cannot be used, in words: missing, a symlink loop, a file where a folder is expected, no permission.
// One wording for every reader (models, datasets, prompts, adapters), so "does not exist" is said only when true.
import { statSync, type Stats } from 'node:fs'
import { errorMessage } from './errors'

/** "does not exist", "is a symlink loop", ... for a failed open/stat. */
export function pathProblem(e: unknown): string {
  switch ((e as NodeJS.ErrnoException)?.code) {
    case 'ENOENT':
      return 'does not exist'
    case 'ELOOP':
      return 'is a symlink loop (a link that points back at itself)'
    case 'EISDIR':
      return 'is a directory'
    case 'ENOTDIR':
      return 'does not exist (a part of the path is a file, not a folder)'
    case 'EACCES':
    case 'EPERM':
      return 'cannot be read (permission denied)'
    default:
      return `cannot be read: ${errorMessage(e)}`
  }
}

/** stat() that returns the reason instead of throwing. */
export function statOrProblem(path: string): { stat: Stats; problem: null } | { stat: null; problem: string } {
  try {
    return { stat: statSync(path), problem: null }
  } catch (e) {
    return { stat: null, problem: pathProblem(e) }
  }
}
