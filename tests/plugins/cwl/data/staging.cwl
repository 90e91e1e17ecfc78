#!/usr/bin/env cwl-runner
# InitialWorkDir (a literal file, a staged input, an empty writable directory), a
# Directory input, a literal File input (contents only), and a Directory output that keeps
# an empty subdirectory.
cwlVersion: v1.2
class: CommandLineTool
requirements:
  InitialWorkDirRequirement:
    listing:
      - entryname: script.sh
        entry: |
          set -e
          mkdir -p result/empty
          ls "$1" | sort > result/listing.txt
          cat staged.txt "$2" > result/joined.txt
          cp config.txt result/config.txt
      - entryname: staged.txt
        entry: $(inputs.data)
      - entryname: config.txt
        entry: "name=$(inputs.name)\n"
  ShellCommandRequirement: {}
inputs:
  data: File
  folder: Directory
  literal: File
  name: string
arguments:
  - {valueFrom: sh script.sh, shellQuote: false}
  - $(inputs.folder.path)
  - $(inputs.literal.path)
outputs:
  result:
    type: Directory
    outputBinding: {glob: result}
