#!/usr/bin/env cwl-runner
# stdin from a File input, stdout captured, EnvVarRequirement, ResourceRequirement,
# DockerRequirement (the image is only used by container runtimes).
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement: {dockerPull: "docker.io/library/alpine:3.20"}
  EnvVarRequirement:
    envDef:
      GREETING: $(inputs.greeting)
  ResourceRequirement: {coresMin: 1, ramMin: 256}
  ShellCommandRequirement: {}
inputs:
  text: File
  greeting: string
arguments:
  - shellQuote: false
    valueFrom: >-
      echo "$GREETING from $HOME with tmp $TMPDIR" && tr a-z A-Z
stdin: $(inputs.text.path)
stdout: shout.txt
stderr: errors.txt
outputs:
  shout: {type: stdout}
  errors: {type: stderr}
