#!/usr/bin/env cwl-runner
cwlVersion: v1.2
class: CommandLineTool
requirements:
  InlineJavascriptRequirement: {}
  ToolTimeLimit: {timelimit: 120}
baseCommand: [sh, -c, 'sleep 1; wc -l < "$0" | tr -d " " > count.txt']
inputs:
  file: {type: File, inputBinding: {position: 1}}
outputs:
  count:
    type: int
    outputBinding:
      glob: count.txt
      loadContents: true
      outputEval: $(parseInt(self[0].contents))
