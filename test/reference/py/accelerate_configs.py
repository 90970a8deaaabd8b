# The exported project's accelerate configs as accelerate itself reads them (docs/exports.md, "Cluster project"):
# `accelerate launch --config_file FILE` parsed by accelerate's own launcher up to where it would start processes:
# the config classes load the file (unknown top-level keys are an error there), every deepspeed_config / fsdp_config
# key must be a launch option accelerate knows (it copies them onto its arguments without checking), and the
# environment the launcher would hand to the processes is built.
import os

from refio import main

os.environ.setdefault('ACCELERATE_LOG_LEVEL', 'error')


def check(data):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    parser = launch_command_parser()
    known = set(vars(parser.parse_args(['train.py'])))
    out = []
    for f in data['files']:
        args, defaults, mp_from_config = _validate_launch_command(parser.parse_args(['--config_file', f, 'train.py']))
        unknown = []
        for section in ('deepspeed_config', 'fsdp_config'):
            for key in getattr(defaults, section) or {}:
                name = 'fsdp_' + key if section == 'fsdp_config' and not key.startswith('fsdp') else key
                if name not in known:
                    unknown.append(f'{section}.{key}')
        if args.use_deepspeed:
            args.deepspeed_fields_from_accelerate_config = ','.join(list(defaults.deepspeed_config) + (['mixed_precision'] if mp_from_config else []))
            _, env = prepare_deepspeed_cmd_env(args)
        else:
            env = prepare_multi_gpu_env(args)
        out.append({
            'file': f,
            'distributed_type': str(defaults.distributed_type.value),
            'num_processes': args.num_processes,
            'num_machines': args.num_machines,
            'unknown': unknown,
            'env': {k: v for k, v in env.items() if k.startswith(('ACCELERATE_', 'FSDP_')) or 'DEEPSPEED' in k},
        })
    return out


main(check)
