# Writes stand-in shared libraries for the CUDA libraries that PyPI's Linux torch links against (cuBLAS, cuDNN,
# NCCL, ...), so torch imports and computes on the CPU without their 2.3 GB of wheels. Run by setup.sh.
#
# Why this works (docs/reference-stack.md): the dynamic loader needs, for every DT_NEEDED soname, a file of that
# name that defines the symbol versions the importing library asks for; torch's libraries bind functions lazily,
# so a function is looked up only when it is first called, and on a machine without a GPU torch never calls into
# these libraries. Each stub therefore defines the version nodes and every function torch imports from it; a call
# (which would be a bug in a CPU-only run) prints which function was reached and aborts.
#
# usage: python3 cuda_stubs.py TORCH_LIB_DIR OUT_DIR   (OUT_DIR must be on torch's RPATH: site-packages/nvidia/cu13/lib)
import os
import re
import subprocess
import sys

# Version tags that are not the soname of the library defining them.
VERSION_ALIAS = {'NVSHMEM': 'libnvshmem_host.so.3'}
# Libraries whose exports carry no version tag: their symbols are recognised by prefix.
UNVERSIONED_PREFIX = {'ncclComm': 'libnccl.so.2', 'nccl': 'libnccl.so.2', 'cusparseLt': 'libcusparseLt.so.0',
                      'cuFile': 'libcufile.so.0', 'nvshmem': 'libnvshmem_host.so.3'}
# The driver: only libcaffe2_nvrtc.so needs it, and torch loads that one on demand (CUDA JIT), never at import.
NOT_STUBBED = {'libcuda.so.1'}
CUDA_LIB = re.compile(r'^lib(cu|nv|nccl)')


def run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def resolvable(soname: str, search_dirs: list[str]) -> bool:
    if any(os.path.exists(os.path.join(d, soname)) for d in search_dirs):
        return True
    return soname in run('ldconfig', '-p')


def main(torch_lib: str, out_dir: str) -> None:
    libs = sorted(os.path.join(torch_lib, f) for f in os.listdir(torch_lib) if f.endswith('.so'))
    site = os.path.dirname(os.path.dirname(os.path.abspath(torch_lib)))
    nvidia_dirs = [os.path.join(site, 'nvidia', d, 'lib') for d in (os.listdir(os.path.join(site, 'nvidia'))
                                                                   if os.path.isdir(os.path.join(site, 'nvidia')) else [])]
    stub_names = set()
    for lib in libs:
        for soname in re.findall(r'Shared library: \[(.+?)\]', run('readelf', '-d', lib)):
            if CUDA_LIB.match(soname) and soname not in NOT_STUBBED:
                stub_names.add(soname)
    # A stub never replaces a real library (a previous run's stubs are regenerated, hence the marker file).
    marker = os.path.join(out_dir, 'REFSTACK_STUBS')
    ours = set(open(marker).read().split()) if os.path.exists(marker) else set()
    stub_names = {s for s in stub_names if s in ours or not resolvable(s, [torch_lib, *nvidia_dirs])}

    imports: dict[str, dict[str, str]] = {s: {} for s in stub_names}  # soname -> symbol -> version tag
    for lib in libs:
        for line in run('nm', '-D', '--undefined-only', lib).splitlines():
            name, _, version = line.split()[-1].partition('@')
            version = version.lstrip('@')
            soname = VERSION_ALIAS.get(version, version)
            if not version:
                soname = next((s for p, s in sorted(UNVERSIONED_PREFIX.items(), key=lambda kv: -len(kv[0]))
                               if name.startswith(p)), '')
            if soname in imports:
                imports[soname][name] = version or soname

    os.makedirs(out_dir, exist_ok=True)
    for soname, table in sorted(imports.items()):
        by_version: dict[str, list[str]] = {}
        for name, version in table.items():
            by_version.setdefault(version, []).append(name)
        by_version.setdefault(soname, [])
        src = os.path.join(out_dir, soname + '.c')
        vmap = os.path.join(out_dir, soname + '.map')
        with open(src, 'w') as f:
            f.write('#include <stdio.h>\n#include <stdlib.h>\n')
            f.write('static void reached(const char* fn) {\n'
                    f'  fprintf(stderr, "refstack: %s (%s) was called; this environment has CPU stand-ins for the '
                    f'CUDA libraries (scripts/refstack/cuda_stubs.py)\\n", fn, "{soname}");\n  abort();\n}}\n')
            for name in sorted(table):
                f.write(f'void {name}(void) {{ reached("{name}"); }}\n')
        with open(vmap, 'w') as f:
            for version, names in sorted(by_version.items()):
                f.write(f'{version} {{ global: {"".join(n + "; " for n in sorted(names))}local: *; }};\n')
        run('gcc', '-shared', '-fPIC', '-O0', '-o', os.path.join(out_dir, soname), f'-Wl,-soname,{soname}',
            f'-Wl,--version-script={vmap}', src)
        os.remove(src)
        os.remove(vmap)
        print(f'  stub {soname}: {len(table)} functions')
    tmp = marker + '.tmp'
    with open(tmp, 'w') as f:
        f.write('\n'.join(sorted(stub_names)) + '\n')
    os.replace(tmp, marker)


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit('usage: cuda_stubs.py TORCH_LIB_DIR OUT_DIR')
    main(sys.argv[1], sys.argv[2])
