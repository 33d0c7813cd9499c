# bash completion for warden's svctl                               -*- shell-script -*-
# Installed as /usr/share/bash-completion/completions/svctl.

_svctl()
{
    local cur prev words cword
    _init_completion 2>/dev/null || {
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    }

    local commands="up start down stop once restart pause cont hup alarm interrupt quit
        usr1 usr2 term kill exit check status metrics log rescan shutdown poweroff reboot halt"
    local options="-d --scandir -w --wait -v --verbose --json -l --long --short -n --lines -f --follow
        -h --help -V --version"

    case $prev in
        -d | --scandir)
            COMPREPLY=($(compgen -d -- "$cur"))
            return
            ;;
        -w | --wait | -n | --lines)
            return
            ;;
    esac

    # The scan dir and whether the command is given yet.
    local scandir=${SVDIR:-/etc/service} command= i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -d | --scandir) scandir=${words[i+1]}; ((i++)) ;;
            -w | --wait | -n | --lines) ((i++)) ;;
            -*) ;;
            *) [[ -z $command ]] && command=${words[i]} ;;
        esac
    done

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
        return
    fi
    if [[ -z $command ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        return
    fi
    case $command in
        rescan | shutdown | poweroff | reboot | halt) return ;;
    esac
    # Services: the entries of the scan dir, or a path.
    if [[ $cur == /* || $cur == .* ]]; then
        COMPREPLY=($(compgen -d -- "$cur"))
        return
    fi
    local names=() entry
    for entry in "$scandir"/*; do
        [[ -d $entry ]] && names+=("${entry##*/}")
    done
    COMPREPLY=($(compgen -W "${names[*]}" -- "$cur"))
} && complete -F _svctl svctl
