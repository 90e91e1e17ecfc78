#!/usr/bin/env cwl-runner
# Exit codes: 0 and 3 are success, 5 is a temporary failure, anything else permanent.
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo ran > ran.txt; exit $0']
successCodes: [0, 3]
temporaryFailCodes: [5]
inputs:
  code: {type: int, inputBinding: {position: 1}}
outputs:
  ran:
    type: File
    outputBinding: {glob: ran.txt}
