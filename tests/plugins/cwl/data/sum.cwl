#!/usr/bin/env cwl-runner
cwlVersion: v1.2
class: CommandLineTool
requirements:
  InlineJavascriptRequirement: {}
baseCommand: [expr]
inputs:
  a: {type: int, inputBinding: {position: 1}}
  b: {type: int, inputBinding: {position: 3}}
arguments: [{valueFrom: '+', position: 2}]
stdout: sum.txt
outputs:
  total:
    type: int
    outputBinding:
      glob: sum.txt
      loadContents: true
      outputEval: $(parseInt(self[0].contents))
